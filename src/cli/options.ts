/** Options several commands share, declared once: the connection flags of client commands, and the log level. */
import { Command, Option } from 'commander';
import type { ConnectFlags } from './connect.js';

/** Adds --data-dir, --host and the --tls-* flags of a client command. */
export function withConnectFlags(command: Command): Command {
  return command
    .option('--data-dir <dir>', 'the local node data dir (default: $MUSTER_DATA_DIR, /var/lib/muster as root, ~/.local/state/muster otherwise)')
    .option('-H, --host <host:port>', 'talk to this manager (default: $MUSTER_HOST, else the manager in the data dir)')
    .option('--tls-cert <file>', 'client certificate for --host (default: $MUSTER_CERT_PATH/cert.pem)')
    .option('--tls-key <file>', 'client key for --host (default: $MUSTER_CERT_PATH/key.pem)')
    .option('--tls-ca <file>', 'root CA to verify the manager (default: $MUSTER_CERT_PATH/ca.pem)');
}

/** The connection flags out of commander's parsed options. */
export function connectFlags(options: Record<string, unknown>): ConnectFlags {
  const flags: ConnectFlags = {};
  for (const key of ['dataDir', 'host', 'tlsCert', 'tlsKey', 'tlsCa'] as const) {
    const value = options[key];
    if (typeof value === 'string') flags[key] = value;
  }
  return flags;
}

/** --log-level for the foreground commands. */
export function logLevelOption(): Option {
  return new Option('--log-level <level>', 'log level (default: $MUSTER_LOG_LEVEL, else info)').choices(['debug', 'info', 'warn', 'error']);
}

/** Collects a repeatable option into a list. */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** How a command reports its exit code to the program. */
export type Done = (code: number) => void;

/** Wraps a command action: its resolved value is the exit code. */
export const act =
  (done: Done) =>
  <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
  async (...args: A): Promise<void> => {
    done(await fn(...args));
  };
