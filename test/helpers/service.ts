/** A founded cluster and its services on a real (in-memory) LevelDB store, with a fake clock: the manager without HTTP. */
import { X509Certificate } from 'node:crypto';
import { MemoryLevel } from 'memory-level';
import { FakeClock } from '../../src/core/clock.js';
import { recordingLogger, silentLogger } from '../../src/core/logger.js';
import { systemRandom } from '../../src/core/random.js';
import { foundCluster, type ExternalCaSpec } from '../../src/manager/services/founding.js';
import { memoryAuditSink } from '../../src/manager/services/audit.js';
import { buildServices } from '../../src/manager/manager.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { generateDataKey } from '../../src/pki/seal.js';
import type { Static, TSchema } from 'typebox';
import type { ChangeEvent, ClusterStore, Ref, Txn } from '../../src/store/cluster-store.js';
import { LevelStore, type LevelDatabase } from '../../src/store/level-store.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import { startEtcd } from './etcd.js';
import type { ManagerBundle } from '../../src/api/schemas.js';

export const HOUR = 3_600_000;

/** A fresh CSR and the key behind it. */
export function freshCsr(): { csr: string; keyPem: string } {
  const key = generateNodeKeySync();
  return { csr: createCsr({ privateKey: key.privateKey }), keyPem: key.privateKeyPem };
}

/** An embedded store in memory. */
export async function memoryStore(): Promise<LevelStore> {
  return LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'level (memory)');
}

/** Options for {@link foundTestCluster}. */
export interface TestClusterOptions {
  certExpiryMs?: number;
  root?: { certPem: string; keyPem?: string };
  externalCAs?: ExternalCaSpec[];
  /** Behave as on a shared store: manager joins and promotions are allowed (the bundle is what a new manager would be given). */
  shared?: boolean;
  /** Another store (default: a fresh in-memory LevelDB). */
  store?: ClusterStore;
}

/** Founds a cluster and returns its services, store, clock and the first manager's certificate. */
export async function foundTestCluster(options: TestClusterOptions = {}) {
  const store = options.store ?? (await memoryStore());
  const clock = new FakeClock(Date.now());
  const logger = recordingLogger();
  const managerKey = freshCsr();
  const dataKey = generateDataKey();
  const founded = await foundCluster({
    store,
    clock,
    random: systemRandom,
    logger,
    dataKey,
    certExpiryMs: options.certExpiryMs ?? 90 * 24 * HOUR,
    csrPem: managerKey.csr,
    hostname: 'manager-1',
    managerAddr: '127.0.0.1:4377',
    ...(options.root === undefined ? {} : { root: options.root }),
    ...(options.externalCAs === undefined ? {} : { externalCAs: options.externalCAs }),
  });
  const bundle: ManagerBundle | undefined =
    options.shared === true ? { etcd: { endpoints: ['127.0.0.1:2379'] }, dataKey: dataKey.toString('base64') } : undefined;
  const audit = memoryAuditSink();
  const { services, membership } = await buildServices({
    store,
    dataKey,
    nodeId: founded.nodeId,
    addr: '127.0.0.1:4377',
    clock,
    random: systemRandom,
    logger,
    managerBundle: () => bundle,
    audit,
    clientTls: () => ({ keyPem: managerKey.keyPem, certPem: founded.certificate.certPem }),
  });
  await membership.register();
  return {
    ...services,
    services,
    membership,
    /** The audit lines written so far. */
    auditLines: audit.lines,
    store,
    clock,
    logger,
    dataKey,
    clusterId: founded.clusterId,
    managerId: founded.nodeId,
    managerCert: new X509Certificate(founded.certificate.certPem),
    /** The first manager's TLS identity, for serving the app. */
    managerTls: { keyPem: managerKey.keyPem, certPem: founded.certificate.certPem, rootPem: founded.rootPem },
    async cleanup() {
      await services.dataKeys.stop();
      await services.state.close();
      await store.close();
    },
  };
}

/** What {@link foundTestCluster} returns. */
export type TestCluster = Awaited<ReturnType<typeof foundTestCluster>>;

/**
 * A test cluster (a day's certificate expiry, a shared store) on an etcd of
 * its own, one member started with `etcdArgs`; `stop()` ends both.
 */
export async function foundOnEtcd(clusterId: string, etcdArgs: string[] = []): Promise<{ t: TestCluster; stop(): Promise<void> }> {
  const etcd = await startEtcd({ args: etcdArgs });
  try {
    const store = await EtcdStore.connect({ connection: { endpoints: etcd.endpoints }, clusterId, logger: silentLogger });
    const t = await foundTestCluster({ store, shared: true, certExpiryMs: 24 * HOUR });
    return {
      t,
      stop: async () => {
        await t.cleanup();
        await etcd.stop();
      },
    };
  } catch (error) {
    await etcd.stop();
    throw error;
  }
}

/**
 * A store whose change feed is held back until `release()`: what a manager
 * sees when another manager's change has not reached it yet (etcd watches
 * lag). Everything else goes to the real store underneath.
 */
export function heldFeed(inner: ClusterStore): ClusterStore & { release(): void } {
  const listeners = new Set<(event: ChangeEvent) => void>();
  const held: ChangeEvent[] = [];
  inner.watch('', (event) => held.push(event));
  return {
    description: inner.description,
    close: () => inner.close(),
    get: (ref) => inner.get(ref),
    list: (space, page) => inner.list(space, page),
    commit: (txn) => inner.commit(txn),
    watch: (_prefix, listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    register: (registration) => inner.register(registration),
    unregister: () => inner.unregister(),
    members: () => inner.members(),
    dump: () => inner.dump(),
    release() {
      for (const event of held.splice(0)) for (const listener of listeners) listener(event);
    },
  };
}

/**
 * A store where another writer gets in first: before each of the next
 * `times` commits that compare `ref`, the record is written again (by
 * default the same value, which still gives it a new version), so that
 * commit fails as a real conflict does and `transact` runs again.
 */
export function contendedStore(
  inner: ClusterStore,
): ClusterStore & { contend<S extends TSchema>(ref: Ref<S>, times: number, change?: (value: Static<S>) => Static<S>): void; readonly conflicts: number } {
  let armed: { key: string; times: number; write: () => Promise<void> } | undefined;
  let conflicts = 0;
  const store = interceptCommits(inner, async (txn) => {
    if (armed !== undefined && armed.times > 0 && txn.compares.some((c) => c.key === armed?.key)) {
      armed.times -= 1;
      await armed.write();
      conflicts += 1;
    }
    return inner.commit(txn);
  });
  return {
    ...store,
    contend(ref, times, change = (value) => value) {
      armed = {
        key: ref.key,
        times,
        write: async () => {
          const entry = (await inner.get(ref))!;
          if (
            !(await inner.commit({ compares: [{ key: ref.key, version: entry.version }], puts: [{ key: ref.key, value: change(entry.value) }], deletes: [] }))
          )
            throw new Error('the contending write failed');
        },
      };
    },
    get conflicts() {
      return conflicts;
    },
  };
}

/** `inner` with every commit going through `commit` (which calls `inner.commit` itself, before or after what it adds); the rest as it is. */
export function interceptCommits(inner: ClusterStore, commit: (txn: Txn) => Promise<boolean>): ClusterStore {
  return {
    description: inner.description,
    close: () => inner.close(),
    get: (ref) => inner.get(ref),
    list: (space, page) => inner.list(space, page),
    commit,
    watch: (prefix, listener) => inner.watch(prefix, listener),
    register: (registration) => inner.register(registration),
    unregister: () => inner.unregister(),
    members: () => inner.members(),
    dump: () => inner.dump(),
  };
}
