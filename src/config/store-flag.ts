/** `--store level`, `--store etcd` (a managed store) or `--store etcd://HOST:PORT[,HOST:PORT…]` (DESIGN §10). */
import { formatHostPort, parseHostPort } from '../core/address.js';
import { MusterError } from '../core/errors.js';

/** The etcd client port, when an endpoint names none. */
export const ETCD_DEFAULT_PORT = 2379;

/** Which store a cluster is founded on (or migrated to). */
export type StoreChoice = { kind: 'level' } | { kind: 'etcd'; endpoints: string[] } | { kind: 'etcd-managed' };

/** Parses the --store flag; USAGE with a hint on anything else. */
export function parseStoreFlag(text: string): StoreChoice {
  const hint = 'use --store level (the default), --store etcd (managers run etcd themselves) or --store etcd://HOST:PORT[,HOST:PORT…] (an etcd you run)';
  if (text === 'level') return { kind: 'level' };
  if (text === 'etcd') return { kind: 'etcd-managed' };
  if (!text.startsWith('etcd://')) throw new MusterError('USAGE', `unknown store '${text.slice(0, 60)}'`, { hint });
  const list = text
    .slice('etcd://'.length)
    .split(',')
    .filter((part) => part !== '');
  if (list.length === 0) throw new MusterError('USAGE', '--store etcd:// names no endpoint', { hint });
  return { kind: 'etcd', endpoints: list.map((endpoint) => formatHostPort(parseHostPort(endpoint.replace(/\/+$/, ''), ETCD_DEFAULT_PORT))) };
}
