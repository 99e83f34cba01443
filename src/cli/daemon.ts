/**
 * The foreground commands: `init` founds a cluster and serves it, `join`
 * joins one and keeps the node's certificate fresh, `run` restarts either
 * from its data dir. Each stays up until SIGINT/SIGTERM and exits 0.
 */
import { readFile, stat } from 'node:fs/promises';
import type { Logger as PinoLogger } from 'pino';
import { MusterError } from '../core/errors.js';
import { formatHostPort, parseHostPort, DEFAULT_PORT } from '../config/address.js';
import { DEFAULT_CERT_EXPIRY_MS, formatDuration, parseCertExpiry, parseDuration } from '../config/duration.js';
import type { DataDirLayout } from '../config/paths.js';
import { importRootCa, importRootCertificate } from '../pki/ca.js';
import { parseExternalCaFlag } from '../config/external-ca.js';
import type { ExternalCaRecord } from '../store/records.js';
import { createCsr } from '../pki/csr.js';
import { generateNodeKey } from '../pki/keys.js';
import { LevelClusterStore } from '../store/cluster-store.js';
import { SCHEMA_VERSION } from '../store/records.js';
import { KeyStore } from '../agent/key-store.js';
import { joinCluster } from '../agent/join.js';
import { NodeAgent } from '../agent/node-agent.js';
import type { RenewerOptions } from '../agent/renewer.js';
import { readNodeState, writeNodeState, type NodeState } from '../agent/node-state.js';
import { Manager } from '../manager/manager.js';
import { initManager } from '../manager/manager.js';
import type { CliContext } from './context.js';
import { layoutFor } from './connect.js';
import { createLogger } from './logger.js';
import { paint, useColour } from './output.js';

/** Flags of `muster init`. */
export interface InitFlags {
  dataDir?: string;
  listenAddr?: string;
  advertiseAddr?: string;
  certExpiry?: string;
  caCert?: string;
  caKey?: string;
  /** Repeatable: protocol=cfssl,url=URL[,cacert=FILE][,authkey=HEX]. */
  externalCa?: string[];
  logLevel?: string;
}

function loggerFor(ctx: CliContext, level?: string): PinoLogger {
  return createLogger({ out: ctx.stderr, level: level ?? ctx.env.MUSTER_LOG_LEVEL ?? 'info' });
}

/** The address a local process uses to reach a listener (0.0.0.0 → 127.0.0.1). */
function dialable(listen: { host: string; port: number }): string {
  const host = listen.host === '0.0.0.0' || listen.host === '' ? '127.0.0.1' : listen.host === '::' ? '::1' : listen.host;
  return formatHostPort({ host, port: listen.port });
}

/** Renewer tuning from the environment: MUSTER_POLL_INTERVAL and MUSTER_RENEW_BACKOFF_BASE (durations). */
function renewerOptions(env: Record<string, string | undefined>): Partial<RenewerOptions> {
  const options: Partial<RenewerOptions> = {};
  if (env.MUSTER_POLL_INTERVAL) options.pollMs = parseDuration(env.MUSTER_POLL_INTERVAL);
  if (env.MUSTER_RENEW_BACKOFF_BASE) options.backoffBaseMs = parseDuration(env.MUSTER_RENEW_BACKOFF_BASE);
  return options;
}

/** The Swarm-shaped join instructions (DESIGN §5). */
export function joinInstructions(role: 'worker' | 'manager', token: string, address: string): string {
  return `To add a ${role} to this cluster, run the following command:\n\n    muster join --token ${token} ${address}\n\n`;
}

async function readFileOr(file: string, code: 'CA_CERT_INVALID' | 'CA_KEY_INVALID' | 'USAGE'): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    throw new MusterError(code, `cannot read ${file}`);
  }
}

/** Reads --external-ca flags, with their cacert files. */
export async function readExternalCas(flags: readonly string[]): Promise<ExternalCaRecord[]> {
  const cas: ExternalCaRecord[] = [];
  for (const text of flags) {
    const flag = parseExternalCaFlag(text);
    const ca: ExternalCaRecord = { url: flag.url };
    if (flag.cacertFile !== undefined) ca.cacertPem = await readFileOr(flag.cacertFile, 'USAGE');
    if (flag.authKeyHex !== undefined) ca.authKeyHex = flag.authKeyHex;
    cas.push(ca);
  }
  return cas;
}

/** The root to found with: none (muster founds one), cert + key, or cert alone with external CAs. */
async function readRoot(flags: InitFlags, ctx: CliContext): Promise<{ root?: { certPem: string; keyPem?: string }; externalCAs?: ExternalCaRecord[] }> {
  const external = flags.externalCa ?? [];
  if (external.length > 0) {
    if (flags.caCert === undefined) throw new MusterError('USAGE', '--external-ca needs --ca-cert, the root the external CA signs with', { hint: 'muster init --external-ca protocol=cfssl,url=https://ca:8888 --ca-cert root.pem' });
    if (flags.caKey !== undefined) throw new MusterError('USAGE', 'with --external-ca the root key stays with the external CA; drop --ca-key');
    const certPem = await readFileOr(flags.caCert, 'CA_CERT_INVALID');
    importRootCertificate(certPem, ctx.clock); // each failure has its own code
    return { root: { certPem }, externalCAs: await readExternalCas(external) };
  }
  if (flags.caCert === undefined && flags.caKey === undefined) return {};
  if (flags.caCert === undefined || flags.caKey === undefined) {
    throw new MusterError('USAGE', '--ca-cert and --ca-key go together', { hint: 'pass both, or neither to found a new root, or --ca-cert with --external-ca' });
  }
  const material = { certPem: await readFileOr(flags.caCert, 'CA_CERT_INVALID'), keyPem: await readFileOr(flags.caKey, 'CA_KEY_INVALID') };
  importRootCa(material, ctx.clock); // validates; each failure has its own code
  return { root: material };
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** `muster init`: found a cluster, then serve it. */
export async function initCommand(ctx: CliContext, flags: InitFlags): Promise<number> {
  const layout = layoutFor(ctx, flags);
  const listen = parseHostPort(flags.listenAddr ?? ctx.env.MUSTER_LISTEN_ADDR ?? `0.0.0.0:${DEFAULT_PORT}`, DEFAULT_PORT);
  const advertise = parseAdvertise(flags.advertiseAddr, listen);
  const certExpiryMs = flags.certExpiry === undefined ? DEFAULT_CERT_EXPIRY_MS : parseCertExpiry(flags.certExpiry);
  const { root, externalCAs } = await readRoot(flags, ctx);
  await refuseExistingCluster(layout);
  const logger = loggerFor(ctx, flags.logLevel);
  const key = await generateNodeKey();
  const keyStore = new KeyStore(layout);
  const founded = await initManager({
    layout,
    advertiseAddr: formatHostPort(advertise),
    advertiseHost: advertise.host,
    certExpiryMs,
    ...(root === undefined ? {} : { root }),
    ...(externalCAs === undefined ? {} : { externalCAs }),
    hostname: ctx.hostname,
    csrPem: createCsr({ privateKey: key.privateKey }),
    clock: ctx.clock,
    random: ctx.random,
    logger,
    writeIdentity: async ({ clusterId, nodeId, certificate, rootPem }) => {
      await keyStore.ensureDirs();
      await keyStore.writePair({ keyPem: key.privateKeyPem, certPem: certificate.certPem, rootPem });
      const state: NodeState = {
        schema: SCHEMA_VERSION,
        clusterId,
        nodeId,
        role: 'manager',
        managers: [formatHostPort(advertise)],
        manager: { listenAddr: formatHostPort(listen), advertiseAddr: formatHostPort(advertise) },
      };
      await writeNodeState(layout.nodeJson, state);
    },
  });
  logger.info({ clusterId: founded.clusterId, nodeId: founded.nodeId, certExpiry: formatDuration(certExpiryMs) }, `cluster ${founded.clusterId} founded; this node (${founded.nodeId}) is its first manager`);
  return serve(ctx, layout, logger, { printJoin: 'init' });
}

/** Refuses init on a data dir that holds a node or a founded store (a store without a cluster is an init that crashed: redo it). */
async function refuseExistingCluster(layout: DataDirLayout): Promise<void> {
  const hint = `restart it with 'muster run --data-dir ${layout.dataDir}', or pick another --data-dir`;
  const state = await readNodeState(layout.nodeJson);
  if (state !== undefined && (state.manager === undefined || (await pathExists(layout.dbDir)))) {
    let founded = state.manager === undefined;
    if (!founded) {
      const store = new LevelClusterStore(layout.dbDir);
      try {
        await store.open();
        founded = (await store.getCluster()) !== undefined;
      } catch {
        founded = true; // locked: a manager is running on it
      } finally {
        await store.close().catch(() => undefined);
      }
    }
    if (founded) throw new MusterError('CLUSTER_EXISTS', `${layout.dataDir} already holds cluster ${state.clusterId}`, { hint });
  }
}

function parseAdvertise(text: string | undefined, listen: { host: string; port: number }): { host: string; port: number } {
  if (text === undefined) {
    const host = listen.host === '0.0.0.0' || listen.host === '::' || listen.host === '' ? '127.0.0.1' : listen.host;
    return { host, port: listen.port };
  }
  return parseHostPort(text, listen.port);
}

/** `muster up`: found a cluster when the data dir is empty, else restart what it holds (what `npm start` runs). */
export async function upCommand(ctx: CliContext, flags: InitFlags): Promise<number> {
  const layout = layoutFor(ctx, flags);
  const state = await readNodeState(layout.nodeJson);
  if (state === undefined) return initCommand(ctx, flags);
  ctx.stderr.write(`${layout.dataDir} already holds node ${state.nodeId}; restarting it (muster run)\n`);
  const listenAddr = flags.listenAddr ?? ctx.env.MUSTER_LISTEN_ADDR;
  return serve(ctx, layout, loggerFor(ctx, flags.logLevel), { printJoin: state.manager !== undefined ? 'restart' : false, ...(listenAddr === undefined ? {} : { listenAddr }) });
}

/** `muster run`: restart whatever this data dir holds. */
export async function runCommand(ctx: CliContext, flags: { dataDir?: string; listenAddr?: string; logLevel?: string }): Promise<number> {
  const layout = layoutFor(ctx, flags);
  const logger = loggerFor(ctx, flags.logLevel);
  const listenAddr = flags.listenAddr ?? ctx.env.MUSTER_LISTEN_ADDR;
  return serve(ctx, layout, logger, { printJoin: false, ...(listenAddr === undefined ? {} : { listenAddr }) });
}

/** `muster join`: join, then keep the node's identity fresh. */
export async function joinCommand(ctx: CliContext, flags: { dataDir?: string; token: string; managerAddr: string; logLevel?: string; label?: string[] }): Promise<number> {
  const layout = layoutFor(ctx, flags);
  const logger = loggerFor(ctx, flags.logLevel);
  const colour = useColour(ctx.stderr, ctx.env);
  const manager = parseHostPort(flags.managerAddr, DEFAULT_PORT);
  const result = await joinCluster({
    token: flags.token,
    managerAddr: formatHostPort(manager),
    layout,
    hostname: ctx.hostname,
    ...(flags.label === undefined ? {} : { labels: parseLabels(flags.label) }),
    clock: ctx.clock,
    logger,
    progress: (line) => ctx.stderr.write(`${paint(line, 'dim', colour)}\n`),
  });
  ctx.stdout.write(
    `This node joined cluster ${result.state.clusterId} as a ${result.state.role} (node ID ${result.state.nodeId}).\n` +
      `Its certificate is in ${layout.certificatesDir} and is valid until ${new Date(result.notAfter).toISOString()}; it renews itself while 'muster' runs.\n`,
  );
  return serve(ctx, layout, logger, { printJoin: false });
}

function parseLabels(items: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new MusterError('USAGE', `a label is KEY=VALUE, got '${item}'`);
    labels[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return labels;
}

/** Runs the node in this data dir (manager or not) until a stop signal. */
async function serve(ctx: CliContext, layout: DataDirLayout, logger: PinoLogger, options: { printJoin: 'init' | 'restart' | false; listenAddr?: string }): Promise<number> {
  const state = await readNodeState(layout.nodeJson);
  if (state === undefined) {
    throw new MusterError('NOT_INITIALISED', `${layout.dataDir} holds no node`, { hint: "found a cluster with 'muster init' or join one with 'muster join'" });
  }
  let fatal: { reason: string; message: string } | undefined;
  let wake: (() => void) | undefined;
  const fatalSignal = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const onFatal = (reason: string, message: string): void => {
    fatal = { reason, message };
    wake?.();
  };

  let manager: Manager | undefined;
  let agent: NodeAgent;
  if (state.manager !== undefined) {
    const pair = await new KeyStore(layout).load();
    if (pair === undefined) throw new MusterError('STATE_CORRUPT', `${layout.dataDir} has no manager certificate`);
    const listen = parseHostPort(options.listenAddr ?? state.manager.listenAddr, DEFAULT_PORT);
    const advertise = parseHostPort(state.manager.advertiseAddr, listen.port);
    manager = await Manager.start({
      layout,
      listen,
      advertiseHost: advertise.host,
      tls: { keyPem: pair.keyPem, certPem: pair.certPem },
      clock: ctx.clock,
      random: ctx.random,
      logger,
    });
    const bound = { host: listen.host, port: manager.address.port };
    const running = manager;
    if (advertise.port === 0 || listen.port === 0) {
      // Listening on port 0 (tests, ad-hoc clusters): advertise the port the OS picked.
      const advertiseAddr = formatHostPort({ host: advertise.host, port: bound.port });
      await running.service.setAdvertiseAddr(advertiseAddr);
      const updated: NodeState = { ...state, managers: [advertiseAddr], manager: { ...state.manager, advertiseAddr } };
      await writeNodeState(layout.nodeJson, updated);
    }
    agent = await NodeAgent.load({
      layout,
      clock: ctx.clock,
      random: ctx.random,
      logger,
      managerAddr: dialable(bound),
      onRenewed: (tls) => running.updateTls(tls),
      onFatal,
      renewerOptions: renewerOptions(ctx.env),
    });
    logger.info({ listen: formatHostPort(bound), clusterId: state.clusterId, nodeId: state.nodeId }, `manager listening on ${formatHostPort(bound)}`);
    if (options.printJoin !== false) {
      const tokens = running.service.joinTokens();
      const address = tokens.managerAddr;
      const banner = options.printJoin === 'init' ? 'Cluster initialized: current node' : 'Cluster restarted: current node';
      ctx.stdout.write(
        `${banner} (${state.nodeId}) is now a manager.\n\n` +
          joinInstructions('worker', tokens.worker, address) +
          `To add a manager to this cluster, run 'muster join-token manager' and follow the instructions.\n`,
      );
    }
    ctx.onReady?.({ address: formatHostPort(bound), nodeId: state.nodeId, role: state.role });
  } else {
    agent = await NodeAgent.load({ layout, clock: ctx.clock, random: ctx.random, logger, onFatal, renewerOptions: renewerOptions(ctx.env) });
    ctx.onReady?.({ nodeId: state.nodeId, role: state.role });
  }
  agent.start();
  const live = agent;
  const unwatch = ctx.onRenewRequest?.(() => {
    logger.info({ reason: 'SIGHUP' }, 'renewal requested');
    void live.renewNow('requested');
  });
  if (agent.nextRenewalAt !== undefined) {
    logger.info({ notAfter: new Date(agent.notAfter).toISOString(), nextRenewal: new Date(agent.nextRenewalAt).toISOString() }, `certificate valid until ${new Date(agent.notAfter).toISOString()}; next renewal ${new Date(agent.nextRenewalAt).toISOString()}`);
  }

  const signal = await Promise.race([ctx.waitForStop(), fatalSignal.then(() => 'fatal')]);
  logger.info({ signal }, signal === 'fatal' ? 'stopping' : `received ${signal}; shutting down`);
  unwatch?.();
  await agent.stop();
  await manager?.stop();
  logger.flush?.();
  if (fatal !== undefined && manager === undefined) {
    throw new MusterError(fatal.reason === 'removed' ? 'NODE_REMOVED' : 'CERT_EXPIRED', fatal.message);
  }
  return 0;
}

