/**
 * The address a manager advertises (DESIGN §11): --advertise-addr when
 * given; the listen host when it is a specific one; and when listening on
 * all interfaces, the address of the interface that holds the default route,
 * as `docker swarm init` picks it, or a refusal when there is none or more
 * than one.
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { isWildcard, parseHostPort, type HostPort } from '../core/address.js';
import { MusterError } from '../core/errors.js';

/** The interfaces that hold an IPv4 default route (/proc/net/route: destination 00000000). */
function defaultRouteInterfaces(): string[] {
  let table: string;
  try {
    table = readFileSync('/proc/net/route', 'utf8');
  } catch {
    return [];
  }
  const names = new Set<string>();
  for (const line of table.split('\n').slice(1)) {
    const [iface, destination, , flags] = line.trim().split(/\s+/);
    // RTF_UP (0x1) must be set.
    if (iface !== undefined && destination === '00000000' && (Number.parseInt(flags ?? '0', 16) & 1) === 1) names.add(iface);
  }
  return [...names];
}

/** The IPv4 address of the default-route interface; ADDRESS_INVALID with a hint when it cannot be told. */
export function defaultAdvertiseHost(): string {
  const hint = "pass --advertise-addr with the address other nodes reach this one on, e.g. '--advertise-addr 192.168.1.10'";
  const ifaces = defaultRouteInterfaces();
  if (ifaces.length === 0) throw new MusterError('ADDRESS_INVALID', 'cannot tell which address to advertise: this machine has no default route', { hint });
  const all = networkInterfaces();
  const addresses = [...new Set(ifaces.flatMap((name) => (all[name] ?? []).filter((a) => a.family === 'IPv4' && !a.internal).map((a) => a.address)))];
  if (addresses.length !== 1) {
    throw new MusterError(
      'ADDRESS_INVALID',
      `cannot tell which address to advertise: the default route's interfaces have ${addresses.length === 0 ? 'no IPv4 address' : `several (${addresses.join(', ')})`}`,
      { hint },
    );
  }
  return addresses[0]!;
}

/** The address nodes are told to reach this manager on. */
export function advertiseFor(text: string | undefined, listen: HostPort): HostPort {
  if (text !== undefined) return parseHostPort(text, listen.port);
  return { host: isWildcard(listen.host) ? defaultAdvertiseHost() : listen.host, port: listen.port };
}
