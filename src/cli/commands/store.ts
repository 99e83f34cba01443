/**
 * `muster store migrate --to etcd://…`: moves a cluster from the embedded
 * store into etcd, with the manager stopped: same cluster ID, root, tokens,
 * nodes and certificate records. The embedded store stays behind, renamed,
 * as a backup; from then on `muster run` serves the cluster from etcd and
 * manager-token joins and promotions work.
 */
import { readFile, rename } from 'node:fs/promises';
import type { Command } from 'commander';
import { MusterError, isMusterError } from '../../core/errors.js';
import { readStoreSpec, writeManagerFiles, readDataKey, type EtcdSpec } from '../../config/manager-files.js';
import { parseStoreFlag } from '../../config/store-flag.js';
import type { TSchema } from 'typebox';
import { KEYS, type ClusterStore, type Ref, type Space } from '../../store/cluster-store.js';
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

/** Every record of the embedded store, meta records last (their presence marks a complete copy). */
export async function readAll(store: ClusterStore): Promise<{ key: string; value: unknown }[]> {
  const records: { key: string; value: unknown }[] = [];
  const spaces: Space<TSchema>[] = [KEYS.nodes, KEYS.certificates, KEYS.scopedTokens, KEYS.revoked];
  for (const space of spaces) {
    for (const entry of await store.list(space)) records.push({ key: space.ref(entry.id).key, value: entry.value });
  }
  const refs: Ref<TSchema>[] = [KEYS.ca, KEYS.tokens, KEYS.managers, KEYS.crl, KEYS.autolock, KEYS.cluster];
  for (const ref of refs) {
    const entry = await store.get(ref);
    if (entry !== undefined) records.push({ key: ref.key, value: entry.value });
  }
  return records;
}

/** `muster store migrate --to etcd://…` */
export async function migrateCommand(ctx: CliContext, flags: MigrateFlags): Promise<number> {
  const choice = parseStoreFlag(flags.to);
  if (choice.kind !== 'etcd') throw new MusterError('USAGE', 'migrate moves a cluster into etcd', { hint: 'muster store migrate --to etcd://HOST:PORT' });
  const layout = layoutFor(ctx, flags);
  const state = await readNodeState(layout.nodeJson);
  const current = await readStoreSpec(layout);
  if (state === undefined || current === undefined) throw new MusterError('NOT_INITIALISED', `${layout.dataDir} holds no manager`, { hint: 'run the migration on the manager, with --data-dir' });
  if (current.kind !== 'level') throw new MusterError('USAGE', `this cluster already lives in etcd (${current.endpoints.join(',')})`);
  const [cacertPem, certPem, keyPem] = await Promise.all([readOptional(flags.storeCacert), readOptional(flags.storeCert), readOptional(flags.storeKey)]);
  const spec: EtcdSpec = { kind: 'etcd', endpoints: choice.endpoints, ...(cacertPem === undefined ? {} : { cacertPem }), ...(certPem === undefined ? {} : { certPem }), ...(keyPem === undefined ? {} : { keyPem }) };
  const dataKey = await readDataKey(layout).catch((error: unknown) => {
    if (!isMusterError(error, 'MANAGER_LOCKED')) throw error;
    throw new MusterError('MANAGER_LOCKED', 'autolock is on: the migration would have to unwrap the data key', { hint: "turn it off for the move ('muster update --autolock=false'), stop the manager, migrate, start it, and turn it on again" });
  });

  let level: LevelStore;
  try {
    level = await LevelStore.openDir(layout.dbDir, { create: false });
  } catch (error) {
    if (isMusterError(error, 'STATE_CORRUPT') && /locked/.test(error.message)) {
      throw new MusterError('MANAGER_RUNNING', 'the manager is running on this data dir', { hint: 'stop it first (Ctrl-C, or systemctl stop muster-manager), then run the migration again' });
    }
    throw error;
  }
  let records: { key: string; value: unknown }[];
  try {
    records = await readAll(level);
  } finally {
    await level.close();
  }
  if (!records.some((r) => r.key === KEYS.cluster.key)) throw new MusterError('STATE_CORRUPT', 'the embedded store holds no complete cluster');

  const etcd = await EtcdStore.connect({ connection: spec, clusterId: state.clusterId, logger: silentLogger });
  try {
    if ((await etcd.get(KEYS.cluster)) !== undefined) {
      throw new MusterError('CLUSTER_EXISTS', `etcd already holds cluster ${state.clusterId}`, { hint: "start the manager with 'muster run' if it was migrated before, or clear /muster/<cluster id>/ in etcd" });
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

/** Registers the store commands. */
export function registerStore(program: Command, ctx: CliContext, done: Done): void {
  const store = program.command('store').description('where the cluster state lives');
  store
    .command('migrate')
    .description('move the cluster from the embedded store into etcd (run it with the manager stopped)')
    .requiredOption('--to <store>', 'etcd://HOST:PORT[,HOST:PORT…]')
    .option('--data-dir <dir>', "the manager's data dir")
    .option('--store-cacert <file>', 'CA certificate of the etcd members (TLS)')
    .option('--store-cert <file>', 'client certificate for etcd (with --store-key)')
    .option('--store-key <file>', 'client key for etcd')
    .action(act(done)((options: MigrateFlags) => migrateCommand(ctx, options)));
}
