/**
 * The store commands.
 *
 * `muster store migrate --to etcd://…`: moves a cluster from the embedded
 * store into etcd, with the manager stopped: same cluster ID, root, tokens,
 * nodes and certificate records. The embedded store stays behind, renamed,
 * as a backup; from then on `muster run` serves the cluster from etcd and
 * manager-token joins and promotions work.
 *
 * `muster store backup --out FILE`: the running manager on this host dumps
 * its store at one point (its local socket); the file is written 0600. The
 * data key in it is wrapped under the unlock key (autolock), a backup key
 * given with --key-file, or a fresh backup key printed once here.
 *
 * `muster store restore FILE --data-dir D`: founds a one-manager cluster
 * from a backup in a new data dir, on the embedded store (manager/services/backup.ts);
 * `muster run` then serves it.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, readdir, rename, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ensurePrivateDir, pathExists, writeFileAtomic } from '../../core/atomic-file.js';
import { DEFAULT_PORT, formatHostPort, parseHostPort } from '../../core/address.js';
import { MusterError, isMusterError } from '../../core/errors.js';
import { readStoreSpec, writeManagerFiles, readDataKey, writeDataKeyFile, writeStoreSpec, type EtcdSpec } from '../../config/manager-files.js';
import { checkDataDirOwner } from '../../config/private-paths.js';
import { createCsr } from '../../pki/csr.js';
import { generateNodeKey } from '../../pki/keys.js';
import { formatUnlockKey } from '../../token/unlock-key.js';
import { checkBackup, parseBackup } from '../../store/backup.js';
import { KeyStore } from '../../agent/key-store.js';
import { writeFounderFiles } from '../../node/node-files.js';
import { openBackup, restoreCluster } from '../../manager/services/backup.js';
import { advertiseFor } from '../../node/advertise.js';
import { localSocketClient } from '../connect.js';
import { lockDataDir } from '../../node/data-dir-lock.js';
import { wrappedDataKey } from '../../node/local-lock.js';
import { openStore } from '../../node/open-store.js';
import { foundManagedStore, prepareFirstMember } from '../../node/managed-found.js';
import type { DataDirLayout } from '../../config/paths.js';
import { DEFAULT_LISTEN_ADDR, daemonLogger } from '../serve.js';
import { readEnv } from '../settings.js';
import { readUnlockKey } from '../unlock-key-input.js';
import { parseStoreFlag } from '../../config/store-flag.js';
import { KEYS, readAllRecords } from '../../store/cluster-store.js';
import { EtcdStore } from '../../store/etcd-store.js';
import { LevelStore } from '../../store/level-store.js';
import { silentLogger } from '../../core/logger.js';
import { readNodeState } from '../../agent/node-state.js';
import type { CliContext } from '../context.js';
import { act, type Done } from '../options.js';
import { layoutFor } from '../settings.js';

/** Flags of `muster store migrate`. */
export interface MigrateFlags {
  to: string;
  dataDir?: string;
  /** --to etcd (a managed store): where this manager's member serves, and which etcd runs it. */
  etcdClientAddr?: string;
  etcdPeerAddr?: string;
  etcdBinary?: string;
  storeCacert?: string;
  storeCert?: string;
  storeKey?: string;
}

/** Puts per etcd transaction (etcd's default limit is 128 operations). */
const CHUNK = 100;

async function readOptional(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return await readFile(file, 'utf8');
  } catch {
    throw new MusterError('USAGE', `cannot read ${file}`);
  }
}

/** Opens the embedded store of a stopped manager (MANAGER_RUNNING while it serves). */
async function openStopped(layout: DataDirLayout): Promise<LevelStore> {
  try {
    return await LevelStore.openDir(layout.dbDir, { create: false });
  } catch (error) {
    if (isMusterError(error, 'STATE_CORRUPT') && /locked/.test(error.message)) {
      throw new MusterError('MANAGER_RUNNING', 'the manager is running on this data dir', {
        hint: 'stop it first (Ctrl-C, or systemctl stop muster-manager), then run the migration again',
      });
    }
    throw error;
  }
}

/**
 * `muster store migrate --to etcd`: grows an embedded cluster in place onto
 * this manager's own etcd member (a managed store), with the manager
 * stopped; the embedded store stays behind, renamed, as a backup. Manager
 * joins work once it runs again.
 */
async function migrateToManaged(ctx: CliContext, flags: MigrateFlags): Promise<number> {
  const layout = layoutFor(ctx, flags);
  const state = await readNodeState(layout.nodeJson);
  const current = await readStoreSpec(layout);
  if (state === undefined || current === undefined)
    throw new MusterError('NOT_INITIALISED', `${layout.dataDir} holds no manager`, { hint: 'run the migration on the manager, with --data-dir' });
  if (current.kind !== 'level')
    throw new MusterError(
      'USAGE',
      `this cluster already lives in etcd (${current.kind === 'etcd-managed' ? 'its managers run it' : current.endpoints.join(',')})`,
    );
  const advertise = state.advertiseAddr ?? state.servingAddr;
  if (advertise === undefined) throw new MusterError('STATE_CORRUPT', `${layout.nodeJson} does not say where this manager is reached`);
  const keyStore = new KeyStore(layout);
  if (await keyStore.keySealed()) {
    throw new MusterError('MANAGER_LOCKED', "autolock is on: the migration would have to open this manager's key", {
      hint: "turn it off for the move ('muster update --autolock=false'), stop the manager, migrate, start it, and turn it on again",
    });
  }
  const pair = await keyStore.load();
  if (pair === undefined) throw new MusterError('STATE_CORRUPT', `${layout.dataDir} has no manager certificate`);
  const { searchPath } = readEnv(ctx);
  const first = await prepareFirstMember({ advertise, flags, searchPath });
  const spec = first.spec(state.nodeId, state.clusterId);
  // Peers check a member's certificate against the host they dial: this manager's certificate must name its peer host (until it renews with them all).
  const cert = new X509Certificate(pair.certPem);
  const peerHost = parseHostPort(spec.peerAddr).host;
  if (cert.checkHost(peerHost) === undefined && cert.checkIP(peerHost) === undefined) {
    throw new MusterError('USAGE', `this manager's certificate does not name ${peerHost}, the host of --etcd-peer-addr`, {
      hint: `leave --etcd-peer-addr out (its advertise host ${parseHostPort(advertise).host} is named), or migrate and move the member later`,
    });
  }
  const level = await openStopped(layout);
  try {
    await foundManagedStore({
      from: level,
      spec,
      layout,
      nodeId: state.nodeId,
      clusterId: state.clusterId,
      tls: pair,
      logger: silentLogger,
      clock: ctx.clock,
      random: ctx.random,
      searchPath,
    });
  } catch (error) {
    await rm(layout.etcdDir, { recursive: true, force: true }); // a failed move leaves the embedded store as it was, and nothing else
    throw error;
  } finally {
    await level.close();
  }
  const backup = `${layout.dbDir}.migrated-${new Date(ctx.clock.now()).toISOString().replace(/[:.]/g, '-')}`;
  await writeStoreSpec(layout, spec);
  await rename(layout.dbDir, backup);
  ctx.stdout.write(
    `Migrated cluster ${state.clusterId} to a managed store: this manager's own etcd member (clients ${spec.clientAddr}, peers ${spec.peerAddr}, data in ${layout.etcdDir}).\n` +
      `The embedded store is kept as a backup in ${backup}.\n` +
      `Start the manager again with 'muster run --data-dir ${layout.dataDir}'; managers can then join with the token from 'muster join-token manager'.\n`,
  );
  return 0;
}

/** `muster store migrate --to etcd://…` */
export async function migrateCommand(ctx: CliContext, flags: MigrateFlags): Promise<number> {
  const choice = parseStoreFlag(flags.to);
  if (choice.kind === 'etcd-managed') return migrateToManaged(ctx, flags);
  if (choice.kind !== 'etcd')
    throw new MusterError('USAGE', 'migrate moves a cluster into etcd', {
      hint: 'muster store migrate --to etcd (the managers run etcd themselves) or --to etcd://HOST:PORT (an etcd you run)',
    });
  const layout = layoutFor(ctx, flags);
  const state = await readNodeState(layout.nodeJson);
  const current = await readStoreSpec(layout);
  if (state === undefined || current === undefined)
    throw new MusterError('NOT_INITIALISED', `${layout.dataDir} holds no manager`, { hint: 'run the migration on the manager, with --data-dir' });
  if (current.kind !== 'level') throw new MusterError('USAGE', `this cluster already lives in etcd (${current.endpoints.join(',')})`);
  const [cacertPem, certPem, keyPem] = await Promise.all([readOptional(flags.storeCacert), readOptional(flags.storeCert), readOptional(flags.storeKey)]);
  const spec: EtcdSpec = {
    kind: 'etcd',
    endpoints: choice.endpoints,
    ...(cacertPem === undefined ? {} : { cacertPem }),
    ...(certPem === undefined ? {} : { certPem }),
    ...(keyPem === undefined ? {} : { keyPem }),
  };
  const dataKey = await readDataKey(layout).catch((error: unknown) => {
    if (!isMusterError(error, 'MANAGER_LOCKED')) throw error;
    throw new MusterError('MANAGER_LOCKED', 'autolock is on: the migration would have to unwrap the data key', {
      hint: "turn it off for the move ('muster update --autolock=false'), stop the manager, migrate, start it, and turn it on again",
    });
  });

  const level = await openStopped(layout);
  let records: { key: string; value: unknown }[];
  try {
    records = await readAllRecords(level);
  } finally {
    await level.close();
  }
  if (!records.some((r) => r.key === KEYS.cluster.key)) throw new MusterError('STATE_CORRUPT', 'the embedded store holds no complete cluster');

  const etcd = await EtcdStore.connect({ connection: spec, clusterId: state.clusterId, logger: silentLogger });
  try {
    if ((await etcd.get(KEYS.cluster)) !== undefined) {
      throw new MusterError('CLUSTER_EXISTS', `etcd already holds cluster ${state.clusterId}`, {
        hint: "start the manager with 'muster run' if it was migrated before, or clear /muster/<cluster id>/ in etcd",
      });
    }
    // Nodes and certificates first, the cluster record last: a copy cut short has no cluster record and can be redone.
    for (let i = 0; i < records.length; i += CHUNK) {
      const chunk = records.slice(i, i + CHUNK);
      const last = i + CHUNK >= records.length;
      const ok = await etcd.commit({ compares: last ? [{ key: KEYS.cluster.key, version: 0 }] : [], puts: chunk, deletes: [] });
      if (!ok) throw new MusterError('CLUSTER_EXISTS', `etcd already holds cluster ${state.clusterId}`);
    }
  } finally {
    await etcd.close();
  }
  const backup = `${layout.dbDir}.migrated-${new Date(ctx.clock.now()).toISOString().replace(/[:.]/g, '-')}`;
  await writeManagerFiles(layout, { store: spec, dataKey });
  await rename(layout.dbDir, backup);
  const nodes = records.filter((r) => r.key.startsWith(KEYS.nodes.prefix)).length;
  const certs = records.filter((r) => r.key.startsWith(KEYS.certificates.prefix)).length;
  ctx.stdout.write(
    `Migrated cluster ${state.clusterId} (${nodes} node${nodes === 1 ? '' : 's'}, ${certs} certificate record${certs === 1 ? '' : 's'}) to ${flags.to}.\n` +
      `The embedded store is kept as a backup in ${backup}.\n` +
      `Start the manager again with 'muster run --data-dir ${layout.dataDir}'; managers can now join with 'muster join-token manager'.\n`,
  );
  return 0;
}

/** Flags of `muster store backup`. */
export interface BackupFlags {
  out: string;
  dataDir?: string;
  keyFile?: string;
}

/** `muster store backup --out FILE`: a backup made by the manager running on this data dir. */
export async function backupCommand(ctx: CliContext, flags: BackupFlags): Promise<number> {
  const layout = layoutFor(ctx, flags);
  const state = await readNodeState(layout.nodeJson);
  if (state === undefined || (await readStoreSpec(layout)) === undefined) {
    throw new MusterError('NOT_INITIALISED', `${layout.dataDir} holds no manager`, { hint: 'run the backup on a manager host, with its --data-dir' });
  }
  if (!(await pathExists(layout.controlSocket))) {
    throw new MusterError('MANAGER_UNREACHABLE', `no manager runs on ${layout.dataDir}`, {
      hint: `the running manager makes the backup: start it ('muster run --data-dir ${layout.dataDir}'), then run the backup again`,
    });
  }
  const backupKey = flags.keyFile === undefined ? undefined : await readUnlockKey(ctx, flags.keyFile);
  const client = localSocketClient(layout, 120_000);
  let answer;
  try {
    answer = await client.call('backup', { body: backupKey === undefined ? {} : { backupKey: formatUnlockKey(backupKey) } }, { timeoutMs: 120_000 });
  } finally {
    await client.close();
  }
  const backup = checkBackup("the manager's answer", answer.backup);
  const out = resolve(flags.out);
  await writeFileAtomic(out, `${JSON.stringify(backup)}\n`, 0o600);
  ctx.stdout.write(
    `Backed up cluster ${backup.clusterId} (${backup.records.length} records at store revision ${backup.revision}, from ${backup.source}) to ${out}.\n`,
  );
  if (answer.backupKey !== undefined) {
    ctx.stdout.write(
      '\nIts data key is sealed under this backup key, shown only now:\n\n' +
        `    ${answer.backupKey}\n\n` +
        'Keep it apart from the backup file (a password manager): the backup cannot be restored without it.\n' +
        'Later backups can use the same key: --key-file FILE, with the key in FILE.\n',
    );
  } else if (backup.dataKey.under === 'unlock-key') {
    ctx.stdout.write("It opens with the cluster's unlock key ('muster unlock-key').\n");
  } else {
    ctx.stdout.write(`It opens with the backup key in ${flags.keyFile ?? 'the key file'}.\n`);
  }
  ctx.stdout.write(`Restore it with 'muster store restore ${out} --data-dir NEW_DIR'.\n`);
  return 0;
}

/** Flags of `muster store restore`. */
export interface RestoreFlags {
  dataDir?: string;
  keyFile?: string;
  listenAddr?: string;
  advertiseAddr?: string;
}

/** Refuses a data dir that is not new or empty: a restore founds its own node there. */
async function refuseUsedDataDir(dataDir: string, nodeJson: string): Promise<void> {
  const state = await readNodeState(nodeJson).catch(() => undefined);
  const hint = 'restore into a new or empty --data-dir';
  if (state !== undefined) throw new MusterError('CLUSTER_EXISTS', `${dataDir} already holds node ${state.nodeId} of cluster ${state.clusterId}`, { hint });
  const names = await readdir(dataDir).catch(() => []);
  if (names.length > 0) throw new MusterError('FILE_EXISTS', `${dataDir} is not empty`, { hint });
}

/** `muster store restore FILE --data-dir D`: a one-manager cluster from a backup, ready for 'muster run'. */
export async function restoreCommand(ctx: CliContext, file: string, flags: RestoreFlags): Promise<number> {
  const env = readEnv(ctx);
  const layout = layoutFor(ctx, flags);
  const listen = parseHostPort(flags.listenAddr ?? env.listenAddr ?? DEFAULT_LISTEN_ADDR, DEFAULT_PORT);
  const advertise = advertiseFor(flags.advertiseAddr, listen);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new MusterError('USAGE', `cannot read the backup ${file}`);
  }
  const backup = parseBackup(file, text);
  await refuseUsedDataDir(layout.dataDir, layout.nodeJson);
  await checkDataDirOwner(layout, ctx.uid);
  const key = await readUnlockKey(ctx, flags.keyFile, { stdinFallback: true });
  if (key === undefined)
    throw new MusterError('USAGE', 'no key given', {
      hint: 'give the backup key (or, under autolock, the unlock key) with --key-file FILE or on standard input',
    });
  const dataKey = openBackup(backup, key); // nothing is written before the key has opened the backup and its MAC holds
  const existedBefore = await pathExists(layout.dataDir);
  const dirLock = await lockDataDir(layout);
  const logger = daemonLogger(ctx, 'warn');
  const advertiseAddr = formatHostPort(advertise);
  let restored;
  try {
    await ensurePrivateDir(layout.dataDir);
    const autolock = backup.dataKey.under === 'unlock-key';
    // Under autolock the restored manager is locked from the start, with the same unlock key: data.key wrapped, node.key sealed.
    await writeStoreSpec(layout, { kind: 'level' });
    await writeDataKeyFile(layout, autolock ? { wrapped: wrappedDataKey(key, dataKey) } : { key: dataKey });
    const store = await openStore({ kind: 'level' }, { layout, clusterId: backup.clusterId, logger, create: true });
    try {
      const nodeKey = await generateNodeKey();
      restored = await restoreCluster({
        store,
        backup,
        dataKey,
        clock: ctx.clock,
        random: ctx.random,
        logger,
        csrPem: createCsr({ privateKey: nodeKey.privateKey }),
        hostname: ctx.hostname,
        managerAddr: advertiseAddr,
        beforeCommit: (r) =>
          writeFounderFiles(new KeyStore(layout, { cipher: { dataKey: () => dataKey, sealing: () => autolock } }), layout.nodeJson, {
            keyPem: nodeKey.privateKeyPem,
            founded: r,
            advertiseAddr,
            listenAddr: formatHostPort(listen),
          }),
      });
    } finally {
      await store.close();
    }
  } catch (error) {
    // The data dir was new or empty: it goes back to that.
    if (existedBefore)
      for (const name of await readdir(layout.dataDir).catch(() => []))
        if (resolve(layout.dataDir, name) !== layout.lockFile) await rm(resolve(layout.dataDir, name), { recursive: true, force: true });
    await dirLock.release();
    if (!existedBefore) await rm(layout.dataDir, { recursive: true, force: true });
    throw error;
  }
  await dirLock.release();
  const made = new Date(backup.createdAt).toISOString();
  ctx.stdout.write(
    `Restored cluster ${restored.clusterId} from ${file} (made ${made} at store revision ${backup.revision}) into ${layout.dataDir}: ${restored.nodes} node${restored.nodes === 1 ? '' : 's'}.\n` +
      `This node (${restored.nodeId}) is its only manager, at ${advertiseAddr}, on the embedded store.\n` +
      (restored.droppedManagers.length === 0
        ? ''
        : `The backup's managers are removed and their manager certificates revoked: ${restored.droppedManagers.join(', ')}.\n`) +
      (restored.skipped.length === 0
        ? ''
        : `Left out ${restored.skipped.length} record${restored.skipped.length === 1 ? '' : 's'} of kinds this muster does not know: ${restored.skipped.slice(0, 5).join(', ')}${restored.skipped.length > 5 ? ', …' : ''}.\n`) +
      `\nStart it with 'muster run --data-dir ${layout.dataDir}'` +
      (restored.autolock ? ", then unlock it with 'muster unlock' and the same unlock key (autolock stays on).\n" : '.\n') +
      `Workers renew against it once they reach it at ${advertiseAddr}; new nodes join with the same join tokens.\n`,
  );
  return 0;
}

/** Registers the store commands. */
export function registerStore(program: Command, ctx: CliContext, done: Done): void {
  const store = program.command('store').description('where the cluster state lives');
  store
    .command('migrate')
    .description('move the cluster from the embedded store into etcd (run it with the manager stopped)')
    .requiredOption('--to <store>', "'etcd' (this manager runs its own etcd member; others join it) or etcd://HOST:PORT[,HOST:PORT…] (an etcd you run)")
    .option('--etcd-client-addr <host:port>', "with --to etcd: where this manager's etcd member serves the managers (default: the advertise host, port 2379)")
    .option(
      '--etcd-peer-addr <host:port>',
      "with --to etcd: where this manager's etcd member talks to the other members (default: the advertise host, port 2380)",
    )
    .option('--etcd-binary <path>', "with --to etcd: the etcd server to run (default: 'etcd' on the PATH)")
    .option('--data-dir <dir>', "the manager's data dir")
    .option('--store-cacert <file>', 'CA certificate of the etcd members (TLS)')
    .option('--store-cert <file>', 'client certificate for etcd (with --store-key)')
    .option('--store-key <file>', 'client key for etcd')
    .action(act(done)((options: MigrateFlags) => migrateCommand(ctx, options)));
  store
    .command('backup')
    .description('write a backup of the cluster store, made by the manager running on this host')
    .requiredOption('--out <file>', 'where the backup goes (written 0600)')
    .option('--data-dir <dir>', "the manager's data dir")
    .option('--key-file <file>', 'seal the backup under the backup key in this file instead of a fresh one (not under autolock)')
    .action(act(done)((options: BackupFlags) => backupCommand(ctx, options)));
  store
    .command('restore')
    .description('found a one-manager cluster from a backup in a new data dir (then: muster run)')
    .argument('<file>', 'the backup file')
    .option('--data-dir <dir>', 'a new or empty data dir for the restored manager')
    .option('--key-file <file>', "a file holding the backup key (the unlock key under autolock), or '-' for standard input")
    .option('--listen-addr <host:port>', 'where the restored manager will listen (default: $MUSTER_LISTEN_ADDR, else 0.0.0.0:4377)')
    .option('--advertise-addr <host[:port]>', 'the address nodes reach it on (default: the listen host)')
    .action(act(done)((file: string, options: RestoreFlags) => restoreCommand(ctx, file, options)));
}
