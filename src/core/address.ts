/** Network addresses as the CLI and node.json write them: `host:port`, `[v6]:port`. */
import { isIP } from 'node:net';
import { MusterError } from './errors.js';

/** The manager's default port. */
export const DEFAULT_PORT = 4377;

/** A host and a port. */
export interface HostPort {
  host: string;
  port: number;
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/** Parses `host:port`, `[::1]:port`, or a bare host when `defaultPort` is given. */
export function parseHostPort(text: string, defaultPort?: number): HostPort {
  const fail = (why: string): never => {
    throw new MusterError('ADDRESS_INVALID', `invalid address ${JSON.stringify(text)}: ${why}`);
  };
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracketed !== null) {
    host = bracketed[1] ?? '';
    portText = bracketed[2];
    if (isIP(host) !== 6) fail('brackets hold an IPv6 address');
  } else if (isIP(text) === 6) {
    host = text; // a bare IPv6 address has no port
  } else {
    const colon = text.lastIndexOf(':');
    host = colon === -1 ? text : text.slice(0, colon);
    portText = colon === -1 ? undefined : text.slice(colon + 1);
    if (isIP(host) === 0 && !HOSTNAME.test(host)) fail('the host is not an IP address or a DNS name');
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return fail('a port is required');
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) return fail('the port is not a number');
    port = Number(portText);
    if (port > 65535) fail('the port is above 65535');
  }
  return { host, port };
}

/** True for a listen host that means "every interface". */
export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** Writes a host and port, with brackets around IPv6 hosts. */
export function formatHostPort(address: HostPort): string {
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
