/**
 * Running a node process in the foreground until SIGINT/SIGTERM (exit 0) or
 * until it stops by itself: left with 'muster leave' (exit 0); removed, or
 * expired past the renewal grace (exit 3, EXIT_FATAL: no restart can help),
 * for init, join, run and up. SIGHUP asks it to renew now.
 */
import type { Logger as PinoLogger } from 'pino';
import { DEFAULT_PORT, parseHostPort } from '../core/address.js';
import { MusterError } from '../core/errors.js';
import type { DataDirLayout } from '../config/paths.js';
import { fileAuditSink, streamAuditSink } from '../manager/services/audit.js';
import type { CliContext } from './context.js';
import { managerBanner } from './instructions.js';
import { createLogger } from './logger.js';
import type { DataDirLock } from '../node/data-dir-lock.js';
import { hasLeft } from '../node/node-files.js';
import { NodeProcess } from '../node/node-process.js';
import type { LocalMember } from '../node/open-store.js';
import { parseLogFormat, readEnv } from './settings.js';
import { readUnlockKey } from './unlock-key-input.js';
import { armFailpoints } from '../core/failpoint.js';

/** The process logger of a foreground command: --log-level and --log-format over MUSTER_LOG_LEVEL and MUSTER_LOG_FORMAT. */
export function daemonLogger(ctx: CliContext, level?: string, format?: string): PinoLogger {
  const env = readEnv(ctx);
  const chosen = format === undefined ? env.logFormat : parseLogFormat(format, '--log-format');
  return createLogger({ out: ctx.stderr, level: level ?? env.logLevel, journald: env.journald, ...(chosen === undefined ? {} : { format: chosen }) });
}

/** Where a manager listens unless told otherwise. */
export const DEFAULT_LISTEN_ADDR = `0.0.0.0:${DEFAULT_PORT}`;

/** What {@link serveNode} runs. */
export interface ServeOptions {
  layout: DataDirLayout;
  logLevel?: string | undefined;
  logFormat?: string | undefined;
  /** The first words of the line printed once a manager serves (false: print nothing). */
  banner: string | false;
  /** Override node.json (run/up flags; MUSTER_LISTEN_ADDR for the listen address). */
  listenAddr?: string | undefined;
  advertiseAddr?: string | undefined;
  /** `--audit-log`: a file, or '-' for standard output; manager/audit.log in the data dir by default. */
  auditLog?: string | undefined;
  /** `--metrics-addr`: plain-HTTP metrics here. */
  metricsAddr?: string | undefined;
  /** Autolock: the unlock key, when given at start (`--unlock-key-file`; else MUSTER_UNLOCK_KEY or the systemd credential); a locked manager otherwise waits for 'muster unlock'. */
  unlockKey?: Buffer | undefined;
  unlockKeyFile?: string | undefined;
  /** Printed once the manager serves (init --autolock: the unlock key). */
  afterBanner?: (manager: NonNullable<NodeProcess['serving']>) => Promise<void>;
  /** The data dir's lock, taken by the command before it wrote (init, join); the node process takes it otherwise. */
  dirLock?: DataDirLock;
  /** `init --force-new-cluster`: the manager's etcd member starts as a one-member store. */
  forceNewCluster?: boolean;
  /** Where this node's etcd member runs should it become a manager of a managed store. */
  localMember?: LocalMember;
}

/** Runs the node in a data dir in the foreground; prints the join instructions once a manager serves. */
export async function serveNode(ctx: CliContext, options: ServeOptions): Promise<number> {
  const env = readEnv(ctx);
  const logger = daemonLogger(ctx, options.logLevel, options.logFormat);
  const listenAddr = options.listenAddr ?? env.listenAddr;
  // A bad address is a usage error before anything starts.
  const metricsAddr = options.metricsAddr === undefined ? undefined : parseHostPort(options.metricsAddr);
  const unlockKey = options.unlockKey ?? (await readUnlockKey(ctx, options.unlockKeyFile));
  armFailpoints(env.failpoints, () => process.kill(process.pid, 'SIGKILL'));
  const node = new NodeProcess({
    layout: options.layout,
    clock: ctx.clock,
    random: ctx.random,
    logger,
    renewer: env.renewer,
    defaultListenAddr: DEFAULT_LISTEN_ADDR,
    uid: ctx.uid,
    searchPath: env.searchPath,
    connectionLimits: env.connectionLimits,
    ...(env.serviceRetry === undefined ? {} : { serviceRetry: env.serviceRetry }),
    ...(env.nodeDownAfterMs === undefined ? {} : { nodeDownAfterMs: env.nodeDownAfterMs }),
    ...(listenAddr === undefined ? {} : { listenAddr }),
    ...(options.advertiseAddr === undefined ? {} : { advertiseAddr: options.advertiseAddr }),
    auditSink: () => (options.auditLog === '-' ? streamAuditSink(ctx.stdout) : fileAuditSink(options.auditLog ?? options.layout.auditLog)),
    ...(metricsAddr === undefined ? {} : { metricsAddr }),
    ...(unlockKey === undefined ? {} : { unlockKey }),
    stopRequested: ctx.waitForStop(),
    ...(options.dirLock === undefined ? {} : { dirLock: options.dirLock }),
    ...(options.forceNewCluster === true ? { forceNewCluster: true } : {}),
    ...(options.localMember === undefined ? {} : { localMember: options.localMember }),
  });
  const banner = options.banner;
  return serveUntilStopped(ctx, node, options.layout, logger, async () => {
    const manager = node.serving;
    if (banner === false || manager === undefined) return;
    const tokens = manager.services.settings.joinTokens();
    // On a terminal the banner stands apart from the log lines around it (they go to stderr, the same screen).
    const apart = (ctx.stdout as { isTTY?: boolean }).isTTY === true ? '\n' : '';
    ctx.stdout.write(`${apart}${managerBanner({ banner, nodeId: node.state.nodeId, workerToken: tokens.worker, address: tokens.managerAddr })}${apart}`);
    await options.afterBanner?.(manager);
  });
}

/** Starts `node`, calls `onServing` once it serves, and runs until a stop signal or a fatal stop. */
async function serveUntilStopped(
  ctx: CliContext,
  node: NodeProcess,
  layout: DataDirLayout,
  logger: PinoLogger,
  onServing?: () => Promise<void>,
): Promise<number> {
  try {
    if (!(await node.start())) {
      logger.info({}, 'stopped while locked');
      return 0;
    }
  } catch (error) {
    // One structured line for the journal (with the code), then the error: and hint: lines.
    logger.error({ code: error instanceof MusterError ? error.code : 'INTERNAL' }, `cannot start: ${error instanceof Error ? error.message : String(error)}`);
    await node.stop();
    throw error;
  }
  await onServing?.();
  const state = node.state;
  ctx.onReady?.({ ...(state.servingAddr === undefined ? {} : { address: state.servingAddr }), nodeId: state.nodeId, role: state.role });
  const unwatch = ctx.onRenewRequest?.(() => {
    logger.info({ reason: 'SIGHUP' }, 'renewal requested');
    void node.renewNow('requested');
  });
  const { notAfter, nextRenewalAt } = node.certificate;
  if (nextRenewalAt !== undefined) {
    logger.info(
      { notAfter: new Date(notAfter).toISOString(), nextRenewal: new Date(nextRenewalAt).toISOString() },
      `certificate valid until ${new Date(notAfter).toISOString()}; next renewal ${new Date(nextRenewalAt).toISOString()}`,
    );
  }
  const outcome = await Promise.race([ctx.waitForStop().then((signal) => ({ signal })), node.fatal.then((fatal) => ({ fatal }))]);
  logger.info({ signal: 'signal' in outcome ? outcome.signal : 'fatal' }, 'signal' in outcome ? `received ${outcome.signal}; shutting down` : 'stopping');
  unwatch?.();
  await node.stop();
  if (!('fatal' in outcome)) return 0;
  // 'muster leave' marks the node before it tells the managers, so its removal is known as a leave here: done, not failed.
  if (outcome.fatal.reason === 'removed' && (await hasLeft(layout, state.nodeId))) {
    logger.info({ nodeId: state.nodeId }, "this node left the cluster ('muster leave'); its daemon stops");
    return 0;
  }
  throw new MusterError(outcome.fatal.reason === 'removed' ? 'NODE_REMOVED' : 'CERT_EXPIRED', outcome.fatal.message, { fatal: true });
}
