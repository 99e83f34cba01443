/** Re-keying (src/manager/state/data-key.ts) on a real LevelDB and on a real etcd: every secret moves to the new key, only the managers that stay get it. */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/core/logger.js';
import { systemRandom } from '../../../src/core/random.js';
import { memoryAuditSink } from '../../../src/manager/services/audit.js';
import { dataKeyId, rekey } from '../../../src/manager/state/data-key.js';
import { buildServices } from '../../../src/manager/manager.js';
import { SEAL_CONTEXT } from '../../../src/manager/state/signer.js';
import { unwrapKey } from '../../../src/pki/key-wrap.js';
import { unseal } from '../../../src/pki/seal.js';
import { createRootCa } from '../../../src/pki/ca.js';
import { KEYS, type ClusterStore, type Txn } from '../../../src/store/cluster-store.js';
import { EtcdStore } from '../../../src/store/etcd-store.js';
import { LevelStore } from '../../../src/store/level-store.js';
import type { Sealed } from '../../../src/store/records.js';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.js';
import { HOUR, foundTestCluster, freshCsr, interceptCommits, type TestCluster } from '../../helpers/service.js';
import { slow } from '../../helpers/slowdown.js';

type Services = Awaited<ReturnType<typeof buildServices>>['services'];

/** Every sealed value the store holds, with the context it is bound to. */
async function sealedValues(store: ClusterStore): Promise<{ what: string; sealed: Sealed; context: string }[]> {
  const out: { what: string; sealed: Sealed; context: string }[] = [];
  const ca = (await store.get(KEYS.ca))!.value;
  if (ca.key !== undefined) out.push({ what: 'ca.key', sealed: ca.key, context: SEAL_CONTEXT.caKey });
  if (ca.rotation?.key !== undefined) out.push({ what: 'ca.rotation.key', sealed: ca.rotation.key, context: SEAL_CONTEXT.caKey });
  for (const [i, p] of (ca.previous ?? []).entries())
    if (p.key !== undefined) out.push({ what: `ca.previous[${i}].key`, sealed: p.key, context: SEAL_CONTEXT.caKey });
  if (ca.admin !== undefined) out.push({ what: 'ca.admin.key', sealed: ca.admin.key, context: SEAL_CONTEXT.adminKey });
  const tokens = (await store.get(KEYS.tokens))!.value;
  for (const role of ['worker', 'manager'] as const) {
    const stored = tokens[role];
    if (typeof stored !== 'string') out.push({ what: `tokens.${role}`, sealed: stored.sealed, context: `${KEYS.tokens.key} ${role}` });
  }
  const autolock = (await store.get(KEYS.autolock))?.value;
  if (autolock?.unlockKey !== undefined) out.push({ what: 'autolock.unlockKey', sealed: autolock.unlockKey, context: KEYS.autolock.key });
  return out;
}

function opens(key: Buffer, value: { sealed: Sealed; context: string }): boolean {
  try {
    unseal(key, value.sealed, value.context);
    return true;
  } catch {
    return false;
  }
}

interface Backend {
  name: string;
  /** A store on the backend, and a second client of the same data (or the same store for LevelDB, which one process serves). */
  open(): Promise<{ first: ClusterStore; second: () => Promise<ClusterStore>; close(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'LevelDB',
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'muster-datakey-'));
      const store = await LevelStore.openDir(join(dir, 'db'), { create: true });
      // One LevelDB serves one process: the second manager shares the store object (close is left to the first).
      const shared: ClusterStore = { ...interceptCommits(store, (txn) => store.commit(txn)), close: async () => {} };
      return { first: store, second: async () => shared, close: async () => rmSync(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'etcd',
    async open() {
      const etcd: EtcdCluster = await startEtcd();
      const connect = (): Promise<EtcdStore> => EtcdStore.connect({ connection: { endpoints: etcd.endpoints }, clusterId: 'rekey', logger: silentLogger });
      return { first: await connect(), second: connect, close: () => etcd.stop() };
    },
  },
];

for (const backend of backends) {
  describe(`re-keying on ${backend.name}`, () => {
    type Manager = { id: string; keyPem: string; certPem: string; services: Services; store: ClusterStore };
    let t: TestCluster;
    let others: Manager[];
    /** What the running test started, stopped in reverse order after it. */
    let started: (() => Promise<void>)[] = [];

    /** A manager that joins with the manager token and serves on its own services. */
    async function joinManager(second: () => Promise<ClusterStore>, n: number): Promise<Manager> {
      const { csr, keyPem } = freshCsr();
      const answer = await t.caServer.join({ token: t.settings.joinTokens().manager, csr, managerAddr: `127.0.0.${n}:4377` }, 'test');
      const store = await second();
      const tls = { keyPem, certPem: answer.certificate };
      const { services, membership } = await buildServices({
        store,
        dataKey: Buffer.from(answer.manager!.dataKey, 'base64'),
        nodeId: answer.nodeId,
        addr: `127.0.0.${n}:4377`,
        clock: t.clock,
        random: systemRandom,
        logger: silentLogger,
        managerBundle: () => undefined,
        audit: memoryAuditSink(),
        clientTls: () => tls,
      });
      await membership.register();
      return { id: answer.nodeId, ...tls, services, store };
    }

    // Three managers on a fresh store for each test: one test demotes a manager (re-keying the cluster),
    // another renews one, and each expects the managers and the key as founding and the joins left them.
    beforeEach(async () => {
      started = [];
      const opened = await backend.open();
      started.push(opened.close);
      t = await foundTestCluster({ store: opened.first, shared: true, certExpiryMs: 24 * HOUR });
      started.push(t.cleanup);
      others = [];
      for (const n of [2, 3]) {
        const other = await joinManager(opened.second, n);
        others.push(other);
        started.push(async () => {
          await other.services.dataKeys.stop();
          await other.services.state.close();
          await other.store.close();
        });
      }
    }, slow(60_000));
    afterEach(async () => {
      for (const stop of started.splice(0).reverse()) await stop();
    });

    it('founding and each manager join write a wrap per manager, each opening the key every manager holds', async () => {
      const record = (await t.store.get(KEYS.dataKey))!.value;
      expect(record.keyId).toBe(dataKeyId(t.dataKey));
      expect(Object.keys(record.wraps).sort()).toEqual([t.managerId, ...others.map((o) => o.id)].sort());
      for (const o of others) expect(unwrapKey(record.wraps[o.id]!, createPrivateKey(o.keyPem), `meta/datakey ${o.id}`)).toEqual(t.dataKey);
    });

    it('demoting a manager re-seals every sealed value under a new key only the managers that stay can unwrap', async () => {
      const [b, c] = others as [Manager, Manager];
      // Something under every kind of seal: an unlock key, a rotation's new root key, a root it replaced.
      await t.autolock.setEnabled(true);
      const admin = await t.authoriser.authorize(t.managerCert, ['manager']);
      for (let i = 0; i < 2; i++) {
        const root = createRootCa({ clusterId: t.clusterId, clock: t.clock, random: systemRandom });
        await t.rotation.start({ caCertPem: root.certPem, caKeyPem: root.keyPem }, admin);
      }
      await vi.waitFor(() => expect(c.services.dataKeys.keyId).toBe(t.dataKeys.keyId));
      const before = t.dataKeys.current(); // what the demoted manager holds
      const sealedBefore = await sealedValues(t.store);
      expect(sealedBefore.map((v) => v.what).sort()).toEqual([
        'autolock.unlockKey',
        'ca.admin.key',
        'ca.key',
        'ca.previous[0].key',
        'ca.rotation.key',
        'tokens.manager',
        'tokens.worker',
      ]);
      expect(sealedBefore.every((v) => opens(before, v))).toBe(true);

      await t.inventory.setRole(c.id, 'worker', admin);

      const record = (await t.store.get(KEYS.dataKey))!.value;
      const after = t.dataKeys.current();
      expect(record.keyId).toBe(dataKeyId(after));
      expect(after.equals(before)).toBe(false);
      expect(Object.keys(record.wraps).sort()).toEqual([t.managerId, b.id].sort());
      expect(record.wraps[c.id]).toBeUndefined();
      expect(unwrapKey(record.wraps[b.id]!, createPrivateKey(b.keyPem), `meta/datakey ${b.id}`)).toEqual(after);
      expect(unwrapKey(record.wraps[t.managerId]!, createPrivateKey(t.managerTls.keyPem), `meta/datakey ${t.managerId}`)).toEqual(after);
      const sealedAfter = await sealedValues(t.store);
      expect(sealedAfter.map((v) => v.what)).toEqual(sealedBefore.map((v) => v.what));
      for (const value of sealedAfter) {
        expect(opens(after, value), value.what).toBe(true);
        expect(opens(before, value), value.what).toBe(false);
      }
      // The manager that stays followed through the change feed; the tokens it shows are the same tokens.
      await vi.waitFor(() => expect(b.services.dataKeys.keyId).toBe(record.keyId));
      expect(b.services.settings.joinTokens().worker).toBe(t.settings.joinTokens().worker);
      // The demoted one did not: it has no copy it can open.
      await vi.waitFor(async () =>
        expect(
          await c.services.dataKeys.sync().then(
            () => 'synced',
            (e: { code?: string }) => e.code,
          ),
        ).toBe('DATA_KEY_UNAVAILABLE'),
      );
      expect(c.services.dataKeys.current()).toEqual(before);
    });

    it('the manager that stays signs joins and its renewal under the new key, and its renewal rewraps its copy', async () => {
      const [b, c] = others as [Manager, Manager];
      // The new key: demoting c re-keys the cluster, b stays.
      const before = t.dataKeys.current();
      await t.inventory.setRole(c.id, 'worker', await t.authoriser.authorize(t.managerCert, ['manager']));
      expect(t.dataKeys.current().equals(before)).toBe(false);
      await vi.waitFor(() => expect(b.services.dataKeys.keyId).toBe(t.dataKeys.keyId));
      const worker = await b.services.caServer.join({ token: b.services.settings.joinTokens().worker, csr: freshCsr().csr }, 'test');
      expect(worker.role).toBe('worker');
      const caller = await b.services.authoriser.authorize(new X509Certificate(b.certPem), ['manager']);
      const fresh = freshCsr();
      await b.services.caServer.renew(caller, { csr: fresh.csr });
      const record = (await t.store.get(KEYS.dataKey))!.value;
      expect(unwrapKey(record.wraps[b.id]!, createPrivateKey(fresh.keyPem), `meta/datakey ${b.id}`)).toEqual(t.dataKeys.current());
      expect(() => unwrapKey(record.wraps[b.id]!, createPrivateKey(b.keyPem), `meta/datakey ${b.id}`)).toThrow();
    });
  });
}

describe('a sealed write racing a re-key (LevelDB)', () => {
  it('fails its commit and seals again under the new key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'muster-datakey-race-'));
    const inner = await LevelStore.openDir(join(dir, 'db'), { create: true });
    let race: (() => Promise<unknown>) | undefined;
    const attempts: Txn[] = [];
    // The re-key commits between the reads of 'autolock on' and its commit (a record the re-key does not rewrite: autolock is off).
    const store = interceptCommits(inner, async (txn) => {
      if (txn.puts.some((p) => p.key === KEYS.autolock.key) && !txn.puts.some((p) => p.key === KEYS.dataKey.key)) {
        attempts.push(txn);
        const now = race;
        race = undefined;
        await now?.();
      }
      return inner.commit(txn);
    });
    const t = await foundTestCluster({ store, certExpiryMs: 24 * HOUR });
    try {
      const before = t.dataKeys.current();
      race = () => rekey({ store: inner, ring: t.dataKeys, clock: t.clock, logger: silentLogger });
      const { result } = await t.autolock.setEnabled(true);
      expect(attempts).toHaveLength(2); // the first commit failed: meta/datakey changed under it
      const after = t.dataKeys.current();
      expect(after.equals(before)).toBe(false);
      const sealed = (await inner.get(KEYS.autolock))!.value.unlockKey!;
      expect(opens(after, { sealed, context: KEYS.autolock.key })).toBe(true);
      expect(opens(before, { sealed, context: KEYS.autolock.key })).toBe(false);
      expect(result?.unlockKey).toMatch(/^SWMKEY-1-/);
    } finally {
      await t.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
