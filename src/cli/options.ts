/** Options several commands share, declared once: the connection flags of client commands, and the log level. */
import { type Command, Option } from 'commander';
import { MusterError } from '../core/errors.js';
import type { ConnectFlags } from './connect.js';

/** Adds --data-dir, --host and the --tls-* flags of a client command. */
export function withConnectFlags(command: Command): Command {
  return command
    .option('--data-dir <dir>', 'the local node data dir (default: $MUSTER_DATA_DIR, /var/lib/muster as root, ~/.local/state/muster otherwise)')
    .option(
      '-H, --host <host>',
      'talk to this manager: HOST[:PORT], tcp://HOST[:PORT] or unix:///PATH (default: $MUSTER_HOST, else the manager in the data dir; port 4377)',
    )
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

/** The options of the commands that may serve a manager: the audit trail and plain-HTTP metrics. */
export function withManagerOptions(command: Command): Command {
  return command
    .option('--audit-log <file>', "where a manager appends its audit trail, or '-' for standard output (default: manager/audit.log in the data dir)")
    .option('--metrics-addr <host:port>', 'also serve GET /metrics in plain HTTP here (loopback: it has no authentication)')
    .option(
      '--unlock-key-file <file>',
      "autolock: a file holding the unlock key, or '-' for standard input (default: $MUSTER_UNLOCK_KEY, else the systemd credential muster-unlock-key; else the manager starts locked)",
    );
}

/** --log-level for the foreground commands. */
export function logLevelOption(): Option {
  return new Option('--log-level <level>', 'log level (default: $MUSTER_LOG_LEVEL, else info)').choices(['debug', 'info', 'warn', 'error']);
}

/** --log-format for the foreground commands. */
export function logFormatOption(): Option {
  return new Option(
    '--log-format <format>',
    'log lines as text or json (default: $MUSTER_LOG_FORMAT, else text on a terminal and under journald, json otherwise)',
  ).choices(['text', 'json']);
}

/** Collects a repeatable option into a list. */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** `--label KEY=VALUE` items as labels. */
export function parseLabels(items: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new MusterError('USAGE', `a label is KEY=VALUE, got '${item.slice(0, 80)}'`);
    labels[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return labels;
}

/** How a command reports its exit code to the program. */
export type Done = (code: number) => void;

/** Wraps a command action: its resolved value is the exit code. */
export const act =
  (done: Done) =>
  <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
  async (...args: A): Promise<void> => {
    done(await fn(...args));
  };
