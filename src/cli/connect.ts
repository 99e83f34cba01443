/**
 * Finding a manager to talk to, the way docker finds its daemon: --host with
 * --tls-cert/--tls-key/--tls-ca, or MUSTER_HOST with MUSTER_CERT_PATH
 * (ca.pem, cert.pem, key.pem), or else the local node's data dir (its own
 * manager first, then the others it knows).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathExists } from '../core/atomic-file.js';
import { DEFAULT_PORT, formatHostPort, parseHostPort } from '../core/address.js';
import { MusterError } from '../core/errors.js';
import { ApiClient } from '../api/client.js';
import type { DataDirLayout } from '../config/paths.js';
import { KeyStore } from '../agent/key-store.js';
import { localManagers, readNodeState, type NodeState } from '../agent/node-state.js';
import type { CliContext } from './context.js';
import { layoutFor, readEnv } from './settings.js';
import { credentialsNearExpiryRenewed } from './api-user-folder.js';

/** Connection flags shared by every client command. */
export interface ConnectFlags {
  dataDir?: string;
  host?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/** A connected client and, when it came from a data dir, the local node. */
export interface Connection {
  client: ApiClient;
  /** The local node, when the credentials are the node's own. */
  local?: { state: NodeState; layout: DataDirLayout };
}

async function readRequired(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    throw new MusterError('USAGE', `cannot read the ${what} ${file}`, { hint: 'check --tls-cert/--tls-key/--tls-ca or MUSTER_CERT_PATH' });
  }
}

/** A client of the manager running on this data dir, over its local socket (acting as that manager). */
export function localSocketClient(layout: DataDirLayout, timeoutMs?: number): ApiClient {
  return new ApiClient({
    managers: [`unix:${layout.controlSocket}`],
    tls: {},
    socketPath: layout.controlSocket,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
}

/** Where --host / MUSTER_HOST points: a manager over TCP (TLS), or a manager's local socket. */
export type HostTarget = { kind: 'tcp'; addr: string } | { kind: 'unix'; path: string };

/**
 * Reads --host / MUSTER_HOST as docker reads DOCKER_HOST: `tcp://H[:P]`,
 * `unix:///PATH` (a manager's control socket, on its host) or `H[:P]`, with
 * 4377 as the default port. Anything else is a usage error, not a lookup of
 * a strange host name.
 */
export function parseHostTarget(text: string): HostTarget {
  const hint = 'write it as HOST[:PORT], tcp://HOST[:PORT] or unix:///PATH/TO/control.sock (the default port is 4377)';
  const value = text.trim();
  if (value.startsWith('unix://')) {
    const path = value.slice('unix://'.length);
    if (!path.startsWith('/')) throw new MusterError('ADDRESS_INVALID', `--host ${value.slice(0, 80)} names no absolute socket path`, { hint });
    return { kind: 'unix', path };
  }
  const rest = value.startsWith('tcp://') ? value.slice('tcp://'.length).replace(/\/+$/, '') : value;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest) || rest.includes('/'))
    throw new MusterError('ADDRESS_INVALID', `--host ${value.slice(0, 80)} is not an address muster can reach`, { hint });
  return { kind: 'tcp', addr: formatHostPort(parseHostPort(rest, DEFAULT_PORT)) };
}

/** Connects a client command to a manager. */
export async function connect(ctx: CliContext, flags: ConnectFlags): Promise<Connection> {
  const env = readEnv(ctx);
  const host = flags.host ?? env.host;
  if (host !== undefined && host !== '') {
    const target = parseHostTarget(host);
    // A manager's local socket: whoever may open it (its owner) acts as that manager, no certificate needed.
    if (target.kind === 'unix') return { client: new ApiClient({ managers: [`unix:${target.path}`], tls: {}, socketPath: target.path }) };
    const certPath = env.certPath;
    if (certPath && flags.tlsCert === undefined && flags.tlsKey === undefined && flags.tlsCa === undefined) {
      // An API user's folder: renewed first when its certificate is in the last third of its lifetime.
      return { client: new ApiClient({ managers: [target.addr], tls: await credentialsNearExpiryRenewed(ctx, target.addr, certPath) }) };
    }
    const certFile = flags.tlsCert ?? (certPath ? join(certPath, 'cert.pem') : undefined);
    const keyFile = flags.tlsKey ?? (certPath ? join(certPath, 'key.pem') : undefined);
    const caFile = flags.tlsCa ?? (certPath ? join(certPath, 'ca.pem') : undefined);
    if (certFile === undefined || keyFile === undefined || caFile === undefined) {
      throw new MusterError('AUTH_REQUIRED', `talking to ${host} needs a client certificate`, {
        hint: 'pass --tls-cert, --tls-key and --tls-ca, or set MUSTER_CERT_PATH to a folder with ca.pem, cert.pem and key.pem',
      });
    }
    const [certPem, keyPem, rootPem] = await Promise.all([
      readRequired(certFile, 'client certificate'),
      readRequired(keyFile, 'client key'),
      readRequired(caFile, 'root CA'),
    ]);
    return { client: new ApiClient({ managers: [target.addr], tls: { certPem, keyPem, rootPem } }) };
  }
  const layout = layoutFor(ctx, flags);
  const state = await readNodeState(layout.nodeJson);
  if (state === undefined) {
    throw new MusterError('NOT_INITIALISED', `no node in ${layout.dataDir}`, {
      hint: 'on a manager host pass --data-dir; elsewhere pass --host H:P with --tls-cert/--tls-key/--tls-ca, or set MUSTER_HOST and MUSTER_CERT_PATH',
    });
  }
  const keyStore = new KeyStore(layout);
  if (await keyStore.keySealed()) {
    // Autolock: this manager's key is sealed; its running process answers on the local socket, as itself.
    if (!(await pathExists(layout.controlSocket))) {
      throw new MusterError('MANAGER_LOCKED', `the key in ${layout.dataDir} is sealed under the unlock key, and no manager runs on it`, {
        hint: "start it ('muster run'; then 'muster unlock'), or use an API-user certificate (--host with --tls-cert/--tls-key/--tls-ca)",
      });
    }
    return { client: localSocketClient(layout), local: { state, layout } };
  }
  const pair = await keyStore.load();
  if (pair === undefined) throw new MusterError('STATE_CORRUPT', `${layout.dataDir} has no certificate`);
  return {
    client: new ApiClient({ managers: localManagers(state), tls: { certPem: pair.certPem, keyPem: pair.keyPem, rootPem: pair.rootPem } }),
    local: { state, layout },
  };
}

/** Runs `fn` with a connection and closes it after. */
export async function withConnection<T>(ctx: CliContext, flags: ConnectFlags, fn: (connection: Connection) => Promise<T>): Promise<T> {
  const connection = await connect(ctx, flags);
  try {
    return await fn(connection);
  } finally {
    await connection.client.close();
  }
}
