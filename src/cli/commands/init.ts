/**
 * `muster init` founds a cluster and serves it; `muster up` (what `npm
 * start` runs) does that on an empty data dir and restarts what the data dir
 * holds otherwise. The listen address is checked before anything is written,
 * and a failed init leaves the data dir as it found it.
 */
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ensurePrivateDir, pathExists } from '../../core/atomic-file.js';
import { DEFAULT_PORT, formatHostPort, parseHostPort } from '../../core/address.js';
import { DEFAULT_CERT_EXPIRY_MS, formatDuration, parseCertExpiry } from '../../core/duration.js';
import { MusterError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { readStoreSpec, writeManagerFiles, writeStoreSpec, type StoreSpec } from '../../config/manager-files.js';
import { foundManagedStore, prepareFirstMember } from '../../node/managed-found.js';
import type { DataDirLayout } from '../../config/paths.js';
import { checkDataDirOwner } from '../../config/private-paths.js';
import { parseStoreFlag } from '../../config/store-flag.js';
import { createCsr } from '../../pki/csr.js';
import { generateNodeKey } from '../../pki/keys.js';
import { generateDataKey } from '../../pki/seal.js';
import { formatUnlockKey, generateUnlockKey } from '../../token/unlock-key.js';
import { KEYS } from '../../store/cluster-store.js';
import { KeyStore } from '../../agent/key-store.js';
import { readNodeState } from '../../agent/node-state.js';
import { writeFounderFiles } from '../../node/node-files.js';
import { foundCluster } from '../../manager/services/founding.js';
import { advertiseFor } from '../../node/advertise.js';
import { checkBindable } from '../../node/bind-check.js';
import { readRoot } from '../ca-files.js';
import type { CliContext } from '../context.js';
import { lockDataDir } from '../../node/data-dir-lock.js';
import { openStore } from '../../node/open-store.js';
import { unlockKeyInstructions } from '../instructions.js';
import { act, collect, logFormatOption, logLevelOption, withManagerOptions, type Done } from '../options.js';
import { DEFAULT_LISTEN_ADDR, daemonLogger, serveNode } from '../serve.js';
import { layoutFor, readEnv } from '../settings.js';

/** Flags of `muster init` (and `up`). */
export interface InitFlags {
  dataDir?: string;
  listenAddr?: string;
  auditLog?: string;
  metricsAddr?: string;
  unlockKeyFile?: string;
  advertiseAddr?: string;
  certExpiry?: string;
  caCert?: string;
  caKey?: string;
  /** Repeatable: protocol=cfssl,url=URL[,cacert=FILE][,authkey=HEX]. */
  externalCa?: string[];
  /** Lets an --external-ca url be plain http://. */
  externalCaInsecure?: boolean;
  store?: string;
  storeCacert?: string;
  storeCert?: string;
  storeKey?: string;
  logLevel?: string;
  logFormat?: string;
  autolock?: boolean;
  /** A managed store (`--store etcd`): where this manager's etcd member serves, and which etcd runs it. */
  etcdClientAddr?: string;
  etcdPeerAddr?: string;
  etcdBinary?: string;
  /** Recover a managed store that lost its quorum: this manager's member goes on alone with the whole state. */
  forceNewCluster?: boolean;
}

async function readStoreFile(file: string | undefined, what: string): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return await readFile(file, 'utf8');
  } catch {
    throw new MusterError('USAGE', `cannot read the ${what} ${file}`);
  }
}

/** The store to found on, with its TLS files read; a managed store is founded on the embedded one, then moved. */
async function storeSpecFrom(flags: InitFlags): Promise<StoreSpec> {
  const choice = parseStoreFlag(flags.store ?? 'level');
  const tlsFlags = flags.storeCacert ?? flags.storeCert ?? flags.storeKey;
  const memberFlags = flags.etcdClientAddr ?? flags.etcdPeerAddr ?? flags.etcdBinary;
  if (choice.kind !== 'etcd-managed' && memberFlags !== undefined)
    throw new MusterError('USAGE', '--etcd-client-addr, --etcd-peer-addr and --etcd-binary go with --store etcd');
  if (choice.kind === 'level' || choice.kind === 'etcd-managed') {
    if (tlsFlags !== undefined) throw new MusterError('USAGE', '--store-cacert, --store-cert and --store-key go with --store etcd://…');
    return { kind: 'level' };
  }
  if ((flags.storeCert === undefined) !== (flags.storeKey === undefined)) throw new MusterError('USAGE', '--store-cert and --store-key go together');
  const [cacertPem, certPem, keyPem] = await Promise.all([
    readStoreFile(flags.storeCacert, 'etcd CA certificate'),
    readStoreFile(flags.storeCert, 'etcd client certificate'),
    readStoreFile(flags.storeKey, 'etcd client key'),
  ]);
  return {
    kind: 'etcd',
    endpoints: choice.endpoints,
    ...(cacertPem === undefined ? {} : { cacertPem }),
    ...(certPem === undefined ? {} : { certPem }),
    ...(keyPem === undefined ? {} : { keyPem }),
  };
}

/** Refuses a data dir that holds a node of a founded cluster (a store without a cluster is an init that crashed: redo it). */
async function refuseExistingCluster(ctx: CliContext, layout: DataDirLayout): Promise<void> {
  const hint = `restart it with 'muster run --data-dir ${layout.dataDir}', or pick another --data-dir`;
  const state = await readNodeState(layout.nodeJson).catch(() => undefined);
  if (state === undefined) return;
  const spec = await readStoreSpec(layout).catch(() => undefined);
  let founded = spec === undefined;
  if (spec !== undefined) {
    try {
      const store = await openStore(spec, { layout, clusterId: state.clusterId, logger: daemonLogger(ctx, 'error') });
      try {
        founded = (await store.get(KEYS.cluster)) !== undefined;
      } finally {
        await store.close();
      }
    } catch {
      founded = true; // locked, damaged or unreachable: never found over it
    }
  }
  if (founded) throw new MusterError('CLUSTER_EXISTS', `${layout.dataDir} already holds cluster ${state.clusterId}`, { hint });
}

/** Removes what a manager left in its folder but its audit trail, which outlives the node (a leave, then an init in the same data dir). */
async function clearManagerDir(layout: DataDirLayout): Promise<void> {
  const names = await readdir(layout.managerDir).catch(() => []);
  for (const name of names) {
    const path = join(layout.managerDir, name);
    if (path !== layout.auditLog) await rm(path, { recursive: true, force: true });
  }
}

/** Removes what a failed init wrote, so the data dir is as it was. */
async function undoInit(layout: DataDirLayout, existedBefore: boolean): Promise<void> {
  if (!existedBefore) {
    await rm(layout.dataDir, { recursive: true, force: true });
    return;
  }
  for (const path of [layout.nodeJson, layout.certificatesDir]) await rm(path, { recursive: true, force: true });
  await clearManagerDir(layout);
}

/** `muster init`: found a cluster, then serve it. */
export async function initCommand(ctx: CliContext, flags: InitFlags): Promise<number> {
  const env = readEnv(ctx);
  const layout = layoutFor(ctx, flags);
  const listen = parseHostPort(flags.listenAddr ?? env.listenAddr ?? DEFAULT_LISTEN_ADDR, DEFAULT_PORT);
  const advertise = advertiseFor(flags.advertiseAddr, listen);
  const certExpiryMs = flags.certExpiry === undefined ? DEFAULT_CERT_EXPIRY_MS : parseCertExpiry(flags.certExpiry);
  if (flags.forceNewCluster === true) return forceNewCluster(ctx, flags);
  const spec = await storeSpecFrom(flags);
  // A managed store: etcd must be there and its ports free before anything is written.
  const managed =
    parseStoreFlag(flags.store ?? 'level').kind === 'etcd-managed'
      ? await prepareFirstMember({ advertise: formatHostPort(advertise), flags, searchPath: readEnv(ctx).searchPath })
      : undefined;
  const { root, externalCAs } = await readRoot(flags, ctx.clock);
  const unlockKey = flags.autolock === true ? generateUnlockKey(ctx.random) : undefined;
  await refuseExistingCluster(ctx, layout);
  await checkDataDirOwner(layout, ctx.uid);
  await checkBindable(listen);
  const logger = daemonLogger(ctx, flags.logLevel, flags.logFormat);
  const existedBefore = (await pathExists(layout.dataDir)) && (await readdir(layout.dataDir)).length > 0;
  // Held from here until the manager stops: two inits at once found one cluster, not two into one folder.
  const dirLock = await lockDataDir(layout);
  const founded = await (async () => {
    try {
      await ensurePrivateDir(layout.dataDir);
      await clearManagerDir(layout); // what a crashed init left
      const clusterId = newId(ctx.random);
      const dataKey = generateDataKey();
      // With autolock the manager wraps its files as it starts (before it serves), and is given the key now.
      await writeManagerFiles(layout, { store: spec, dataKey });
      const store = await openStore(spec, { layout, clusterId, logger, create: true });
      try {
        const key = await generateNodeKey();
        const advertiseAddr = formatHostPort(advertise);
        const founded = await foundCluster({
          store,
          clusterId,
          clock: ctx.clock,
          random: ctx.random,
          logger,
          dataKey,
          certExpiryMs,
          ...(root === undefined ? {} : { root }),
          ...(externalCAs === undefined ? {} : { externalCAs }),
          csrPem: createCsr({ privateKey: key.privateKey }),
          hostname: ctx.hostname,
          managerAddr: advertiseAddr,
          ...(managed === undefined ? {} : { extraHosts: managed.hosts }),
          ...(unlockKey === undefined ? {} : { unlockKey }),
          beforeCommit: (f) =>
            writeFounderFiles(new KeyStore(layout), layout.nodeJson, {
              keyPem: key.privateKeyPem,
              founded: f,
              advertiseAddr,
              listenAddr: formatHostPort(listen),
            }),
        });
        if (managed !== undefined) {
          // Founded on the embedded store; now the same records go into this manager's own etcd member.
          const managedSpec = managed.spec(founded.nodeId, founded.clusterId);
          await foundManagedStore({
            from: store,
            spec: managedSpec,
            layout,
            nodeId: founded.nodeId,
            clusterId: founded.clusterId,
            tls: { keyPem: key.privateKeyPem, certPem: founded.certificate.certPem, rootPem: founded.rootPem },
            logger,
            clock: ctx.clock,
            random: ctx.random,
            searchPath: readEnv(ctx).searchPath,
          });
          await writeStoreSpec(layout, managedSpec);
        }
        return founded;
      } finally {
        await store.close();
        if (managed !== undefined) await rm(layout.dbDir, { recursive: true, force: true });
      }
    } catch (error) {
      await undoInit(layout, existedBefore);
      await dirLock.release();
      throw error;
    }
  })();
  logger.info(
    {
      clusterId: founded.clusterId,
      nodeId: founded.nodeId,
      certExpiry: formatDuration(certExpiryMs),
      store: managed === undefined ? spec.kind : 'etcd-managed',
    },
    `cluster ${founded.clusterId} founded; this node (${founded.nodeId}) is its first manager`,
  );
  return serveNode(ctx, {
    layout,
    logLevel: flags.logLevel,
    logFormat: flags.logFormat,
    banner: 'Cluster initialized: current node',
    auditLog: flags.auditLog,
    metricsAddr: flags.metricsAddr,
    ...(unlockKey === undefined ? {} : { unlockKey, afterBanner: async () => void ctx.stdout.write(`\n${unlockKeyInstructions(formatUnlockKey(unlockKey))}`) }),
    dirLock,
  }).finally(() => dirLock.release());
}

/**
 * `muster init --force-new-cluster` (Swarm's flag) on a surviving manager of
 * a managed store that lost its quorum: its etcd member restarts as a
 * one-member store that keeps the whole state, the other managers are marked
 * gone (their access and members removed), and it serves.
 */
async function forceNewCluster(ctx: CliContext, flags: InitFlags): Promise<number> {
  const layout = layoutFor(ctx, flags);
  const state = await readNodeState(layout.nodeJson);
  const spec = await readStoreSpec(layout).catch(() => undefined);
  if (state === undefined || state.role !== 'manager' || spec === undefined) {
    throw new MusterError('USAGE', `--force-new-cluster recovers a manager that holds the cluster's state, and ${layout.dataDir} holds none`, {
      hint: 'run it with --data-dir on a surviving manager',
    });
  }
  if (spec.kind !== 'etcd-managed') {
    throw new MusterError(
      'USAGE',
      `--force-new-cluster recovers a managed store (--store etcd); this manager's store is ${spec.kind === 'level' ? 'the embedded one, which has no quorum to lose' : "an etcd you run: recover it with etcd's own --force-new-cluster"}`,
    );
  }
  return serveNode(ctx, {
    layout,
    logLevel: flags.logLevel,
    logFormat: flags.logFormat,
    banner: 'Cluster recovered (one manager, the whole state): current node',
    listenAddr: flags.listenAddr,
    advertiseAddr: flags.advertiseAddr,
    auditLog: flags.auditLog,
    metricsAddr: flags.metricsAddr,
    unlockKeyFile: flags.unlockKeyFile,
    forceNewCluster: true,
  });
}

/** `muster up`: found a cluster when the data dir is empty, else restart what it holds (what `npm start` runs). */
export async function upCommand(ctx: CliContext, flags: InitFlags): Promise<number> {
  const layout = layoutFor(ctx, flags);
  const state = await readNodeState(layout.nodeJson);
  if (state === undefined) return initCommand(ctx, flags);
  ctx.stderr.write(`${layout.dataDir} already holds node ${state.nodeId}; restarting it (muster run)\n`);
  return serveNode(ctx, {
    layout,
    logLevel: flags.logLevel,
    logFormat: flags.logFormat,
    banner: 'Cluster restarted: current node',
    listenAddr: flags.listenAddr,
    advertiseAddr: flags.advertiseAddr,
    auditLog: flags.auditLog,
    metricsAddr: flags.metricsAddr,
    unlockKeyFile: flags.unlockKeyFile,
  });
}

/** Adds the options of init and up. */
function initOptions(command: Command): Command {
  return withManagerOptions(
    command
      .option('--data-dir <dir>', 'where the cluster state goes')
      .option('--listen-addr <host:port>', 'address the API listens on (default: $MUSTER_LISTEN_ADDR, else 0.0.0.0:4377)')
      .option(
        '--advertise-addr <host[:port]>',
        "address nodes use to reach this manager (default: the listen host, or the default route's address when listening on all interfaces)",
      )
      .option('--cert-expiry <duration>', "lifetime of node certificates, e.g. '2160h', '90d' (minimum 5m)", '2160h')
      .option('--ca-cert <file>', 'bring your own root CA certificate (with --ca-key)')
      .option('--ca-key <file>', 'the private key of --ca-cert')
      .option(
        '--external-ca <spec>',
        'sign with an external CA instead of a local key (repeatable, tried in order): protocol=cfssl,url=URL[,cacert=FILE][,authkey=HEX]',
        collect,
        [],
      )
      .option('--external-ca-insecure', 'allow an --external-ca url that is plain http:// (requests and certificates then travel in clear)')
      .option(
        '--store <store>',
        "where the cluster state lives: 'level' (embedded, one manager), 'etcd' (the managers run etcd themselves: several managers) or etcd://HOST:PORT[,HOST:PORT…] (an etcd you run)",
        'level',
      )
      .option(
        '--etcd-client-addr <host:port>',
        "with --store etcd: where this manager's etcd member serves the managers (default: the advertise host, port 2379)",
      )
      .option(
        '--etcd-peer-addr <host:port>',
        "with --store etcd: where this manager's etcd member talks to the other members (default: the advertise host, port 2380)",
      )
      .option('--etcd-binary <path>', "with --store etcd: the etcd server to run (default: 'etcd' on the PATH)")
      .option(
        '--force-new-cluster',
        "recover a managed store that lost its quorum: run on a surviving manager's data dir; it goes on alone with the whole state",
      )
      .option('--store-cacert <file>', 'CA certificate of the etcd members (TLS)')
      .option('--store-cert <file>', 'client certificate for etcd (with --store-key)')
      .option('--store-key <file>', 'client key for etcd')
      .option('--autolock', "init: encrypt the managers' keys at rest under an unlock key (printed once; 'muster unlock' after each restart)")
      .addOption(logLevelOption())
      .addOption(logFormatOption()),
  );
}

/** Registers init and up. */
export function registerInit(program: Command, ctx: CliContext, done: Done): void {
  initOptions(program.command('init').description('found a cluster: a root CA, this node as its first manager, join tokens; then serve')).action(
    act(done)((options: InitFlags) => initCommand(ctx, options)),
  );
  initOptions(program.command('up').description('init when the data dir is empty, else run it (what `npm start` does)')).action(
    act(done)((options: InitFlags) => upCommand(ctx, options)),
  );
}
