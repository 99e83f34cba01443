/**
 * The one reader of the environment. Every MUSTER_* variable (and NO_COLOR,
 * TERM, XDG_STATE_HOME) is read here and nowhere else, and parsed once.
 */
import type { BackoffPolicy } from '../core/backoff.js';
import { SERVICE_RETRY } from '../agent/service-defaults.js';
import { LOG_FORMATS, type LogFormat } from './log-format.js';
import { parseDuration } from '../core/duration.js';
import { MusterError } from '../core/errors.js';
import { dataDirLayout, resolveDataDir, type DataDirLayout } from '../config/paths.js';
import { NODES_PAGE } from '../api/pages.js';
import type { RenewerOptions } from '../agent/renewer.js';
import type { SessionOptions } from '../agent/session.js';
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from '../manager/http/connection-limits.js';
import type { CliContext } from './context.js';

/** A node polls its manager at most this often. */
export const MIN_POLL_MS = 1_000;

/** Settings that come from the environment. */
export interface EnvSettings {
  logLevel: string;
  /** MUSTER_LOG_FORMAT: text or json (default: text on a terminal and under journald, else json). */
  logFormat?: LogFormat;
  /** JOURNAL_STREAM: stderr goes to journald, which reads a priority prefix on each line. */
  journald: boolean;
  /** MUSTER_LOG_LEVEL as set (logLevel has the default filled in). */
  explicitLogLevel?: string;
  /** MUSTER_DATA_DIR, as set. */
  dataDir?: string;
  /** MUSTER_CONFIG: the config file of `muster run`. */
  configFile?: string;
  /** MUSTER_LISTEN_ADDR: where a manager listens, over node.json. */
  listenAddr?: string;
  renewer: Partial<RenewerOptions & SessionOptions>;
  /** MUSTER_HOST and MUSTER_CERT_PATH, for client commands. */
  host?: string;
  certPath?: string;
  /** MUSTER_TOKEN, for join. */
  token?: string;
  /** MUSTER_MAX_CONNECTIONS, MUSTER_MAX_CONNECTIONS_PER_SOURCE, MUSTER_HANDSHAKE_TIMEOUT: a manager's connection caps. */
  connectionLimits: ConnectionLimits;
  /** MUSTER_NODE_DOWN_AFTER: how long a silent node is still shown as ready (a manager's setting, like Swarm's heartbeat period). */
  nodeDownAfterMs?: number;
  /** MUSTER_PAGE_SIZE: nodes asked for per request by listing commands (1 to 1000). */
  pageSize?: number;
  /** MUSTER_UNLOCK_KEY: autolock's unlock key, for run and unlock. */
  unlockKey?: string;
  /** CREDENTIALS_DIRECTORY: where systemd put the unit's credentials (LoadCredential=muster-unlock-key:…). */
  credentialsDirectory?: string;
  /** MUSTER_FAILPOINTS: crash points armed for fault-injection tests (core/failpoint.ts). */
  failpoints: string[];
  /** Whether colour may be used on a stream. */
  colour(stream: { isTTY?: boolean }): boolean;
  /** PATH: where a managed store's etcd (and setpriv) are looked for. */
  searchPath: string;
  /** MUSTER_SERVICE_RETRY_BASE: the first backoff ceiling of failed service certificate hooks and renewals (default 5s). */
  serviceRetry?: BackoffPolicy;
}

/** A log format by name (`--log-format`, MUSTER_LOG_FORMAT); USAGE for anything else. */
export function parseLogFormat(text: string, where: string): LogFormat {
  if ((LOG_FORMATS as readonly string[]).includes(text)) return text as LogFormat;
  throw new MusterError('USAGE', `${where}=${text.slice(0, 20)} is not a log format`, { hint: 'use text or json' });
}

/** Reads the environment of a CLI run. */
export function readEnv(ctx: Pick<CliContext, 'env'>): EnvSettings {
  const env = ctx.env;
  // Agents hold a session: a long poll on one kept-alive connection (issue 20).
  const renewer: Partial<RenewerOptions & SessionOptions> = { session: true };
  if (env.MUSTER_POLL_INTERVAL) {
    const pollMs = parseDuration(env.MUSTER_POLL_INTERVAL);
    if (pollMs < MIN_POLL_MS)
      throw new MusterError('USAGE', `MUSTER_POLL_INTERVAL=${env.MUSTER_POLL_INTERVAL} is below the minimum of 1s`, {
        hint: 'set it to 1s or more (default 30s)',
      });
    renewer.pollMs = pollMs;
  }
  if (env.MUSTER_RENEW_BACKOFF_BASE) renewer.backoffBaseMs = parseDuration(env.MUSTER_RENEW_BACKOFF_BASE);
  if (env.MUSTER_RENEW_SPREAD) renewer.spreadMs = parseDuration(env.MUSTER_RENEW_SPREAD);
  let pageSize: number | undefined;
  if (env.MUSTER_PAGE_SIZE) {
    pageSize = /^[0-9]{1,4}$/.test(env.MUSTER_PAGE_SIZE) ? Number(env.MUSTER_PAGE_SIZE) : 0;
    if (pageSize < 1 || pageSize > NODES_PAGE.max) {
      throw new MusterError('USAGE', `MUSTER_PAGE_SIZE=${env.MUSTER_PAGE_SIZE.slice(0, 20)} is not a page size`, {
        hint: `set it to a whole number from 1 to ${NODES_PAGE.max} (default ${NODES_PAGE.default})`,
      });
    }
  }
  const count = (name: string, fallback: number): number => {
    const text = env[name];
    if (text === undefined || text === '') return fallback;
    if (!/^[1-9][0-9]{0,6}$/.test(text)) throw new MusterError('USAGE', `${name}=${text.slice(0, 20)} is not a positive whole number`);
    return Number(text);
  };
  const connectionLimits: ConnectionLimits = {
    total: count('MUSTER_MAX_CONNECTIONS', DEFAULT_CONNECTION_LIMITS.total),
    perSource: count('MUSTER_MAX_CONNECTIONS_PER_SOURCE', DEFAULT_CONNECTION_LIMITS.perSource),
    handshakeMs: env.MUSTER_HANDSHAKE_TIMEOUT ? parseDuration(env.MUSTER_HANDSHAKE_TIMEOUT) : DEFAULT_CONNECTION_LIMITS.handshakeMs,
  };
  const settings: EnvSettings = {
    connectionLimits,
    logLevel: env.MUSTER_LOG_LEVEL ?? 'info',
    renewer,
    failpoints: (env.MUSTER_FAILPOINTS ?? '').split(',').filter((name) => name !== ''),
    colour: (stream) => stream.isTTY === true && env.NO_COLOR === undefined && env.TERM !== 'dumb',
    searchPath: env.PATH ?? '',
    journald: (env.JOURNAL_STREAM ?? '') !== '',
  };
  if (env.MUSTER_LOG_FORMAT) settings.logFormat = parseLogFormat(env.MUSTER_LOG_FORMAT, 'MUSTER_LOG_FORMAT');
  if (env.MUSTER_LISTEN_ADDR) settings.listenAddr = env.MUSTER_LISTEN_ADDR;
  if (env.MUSTER_LOG_LEVEL) settings.explicitLogLevel = env.MUSTER_LOG_LEVEL;
  if (env.MUSTER_DATA_DIR) settings.dataDir = env.MUSTER_DATA_DIR;
  if (env.MUSTER_CONFIG) settings.configFile = env.MUSTER_CONFIG;
  if (env.MUSTER_HOST) settings.host = env.MUSTER_HOST;
  if (env.MUSTER_CERT_PATH) settings.certPath = env.MUSTER_CERT_PATH;
  if (env.MUSTER_TOKEN) settings.token = env.MUSTER_TOKEN;
  if (env.MUSTER_UNLOCK_KEY) settings.unlockKey = env.MUSTER_UNLOCK_KEY;
  if (env.CREDENTIALS_DIRECTORY) settings.credentialsDirectory = env.CREDENTIALS_DIRECTORY;
  if (pageSize !== undefined) settings.pageSize = pageSize;
  if (env.MUSTER_NODE_DOWN_AFTER) settings.nodeDownAfterMs = parseDuration(env.MUSTER_NODE_DOWN_AFTER);
  if (env.MUSTER_SERVICE_RETRY_BASE) settings.serviceRetry = { ...SERVICE_RETRY, baseMs: parseDuration(env.MUSTER_SERVICE_RETRY_BASE) };
  return settings;
}

/** The data dir layout: --data-dir, else $MUSTER_DATA_DIR, else the default for this user. */
export function layoutFor(ctx: Pick<CliContext, 'env' | 'uid' | 'home'>, flags: { dataDir?: string }): DataDirLayout {
  const env = ctx.env;
  return dataDirLayout(
    resolveDataDir({
      ...(flags.dataDir === undefined ? {} : { flag: flags.dataDir }),
      ...(env.MUSTER_DATA_DIR ? { envDir: env.MUSTER_DATA_DIR } : {}),
      ...(env.XDG_STATE_HOME ? { xdgStateHome: env.XDG_STATE_HOME } : {}),
      uid: ctx.uid,
      home: ctx.home,
    }),
  );
}
