/** The ClusterStore contract on a real etcd (Debian's etcd-server on a random loopback port). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { silentLogger } from '../../src/core/logger.js';
import { KEYS, transact, type ChangeEvent } from '../../src/store/cluster-store.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import { TRUST_MS } from '../../src/store/feed-cache.js';
import { SCHEMA_VERSION, type NodeRecord } from '../../src/store/records.js';
import { codeOf } from '../helpers/codes.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';

let etcd: EtcdCluster;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

let n = 0;
const connect = (clusterId = `c${n++}`) => EtcdStore.connect({ connection: { endpoints: etcd.endpoints }, clusterId, logger: silentLogger });
const node = (id: string, overrides: Partial<NodeRecord> = {}): NodeRecord => ({
  schema: SCHEMA_VERSION,
  id,
  role: 'worker',
  hostname: 'h',
  labels: {},
  createdAt: 1,
  lastSeenAt: 1,
  certSerial: `S${id}`,
  certNotAfter: 2,
  certRole: 'worker',
  removed: false,
  ...overrides,
});
const put = (key: string, value: unknown, version = 0) => ({ compares: [{ key, version }], puts: [{ key, value }], deletes: [] });

describe('EtcdStore', () => {
  it('versions records by mod revision and commits only when the compared versions hold', async () => {
    const store = await connect();
    try {
      expect(await store.commit(put('nodes/a', node('a')))).toBe(true);
      const a = (await store.get(KEYS.nodes.ref('a')))!;
      expect(a.value).toEqual(node('a'));
      expect(await store.commit(put('nodes/a', node('a', { hostname: 'x' })))).toBe(false);
      expect(await store.commit(put('nodes/a', node('a', { hostname: 'x' }), a.version))).toBe(true);
      expect(await store.commit(put('nodes/a', node('a', { hostname: 'y' }), a.version))).toBe(false);
      expect((await store.get(KEYS.nodes.ref('a')))?.value.hostname).toBe('x');
    } finally {
      await store.close();
    }
  });

  it('keeps each cluster under its own prefix, lists in key order and pages', async () => {
    const one = await connect();
    const two = await connect();
    try {
      for (const id of ['c', 'a', 'b']) await one.commit(put(`nodes/${id}`, node(id)));
      await two.commit(put('nodes/z', node('z')));
      expect((await one.list(KEYS.nodes)).map((e) => e.id)).toEqual(['a', 'b', 'c']);
      expect((await one.list(KEYS.nodes, { after: 'a', limit: 1 })).map((e) => e.id)).toEqual(['b']);
      expect((await two.list(KEYS.nodes)).map((e) => e.id)).toEqual(['z']);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('read-modify-write from two clients at once loses nothing', async () => {
    const id = `c${n++}`;
    const [a, b] = [await connect(id), await connect(id)];
    try {
      await transact(a, async (tx) => tx.put(KEYS.tokens, { schema: SCHEMA_VERSION, worker: '0', manager: 'm', rotatedAt: { worker: 1, manager: 1 } }));
      const bump = (store: EtcdStore) =>
        transact(
          store,
          async (tx) => {
            const t = (await tx.get(KEYS.tokens))!;
            tx.put(KEYS.tokens, { ...t, worker: String(Number(t.worker) + 1) });
          },
          { attempts: 200 },
        );
      await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i % 2 === 0 ? a : b)));
      expect((await a.get(KEYS.tokens))?.value.worker).toBe('20');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('groups concurrent commits into one Txn, and a stale one in a group fails alone, the others sent again together', async () => {
    const store = await connect();
    const revision = async () => Number((await store.etcd.get('~revision').exec()).header.revision);
    try {
      await store.commit(put('nodes/shared', node('shared')));
      const shared = (await store.get(KEYS.nodes.ref('shared')))!;
      const before = await revision();
      const results = await Promise.all([
        ...Array.from({ length: 30 }, (_, i) => store.commit(put(`nodes/g${i}`, node(`g${i}`)))),
        store.commit(put('nodes/shared', node('shared', { hostname: 'stale' }), shared.version + 1)), // a version it never had
        store.commit(put('nodes/shared', node('shared', { hostname: 'fresh' }), shared.version)),
        store.commit(put('nodes/shared', node('shared', { hostname: 'second' }), shared.version)), // loses to the one before
      ]);
      expect(results.slice(0, 30).every(Boolean)).toBe(true);
      expect(results.slice(30)).toEqual([false, true, false]);
      // The first commit went at once, alone; the stale one's group failed once, its failure branch showed whose version had changed,
      // and the rest (30 writes) committed in one more Txn: two revisions, where trying each alone made one per commit.
      expect(await revision()).toBe(before + 2);
      expect((await store.list(KEYS.nodes)).length).toBe(31);
      expect((await store.get(KEYS.nodes.ref('shared')))?.value.hostname).toBe('fresh');
    } finally {
      await store.close();
    }
  });

  it('tells watchers about changes made by another client', async () => {
    const id = `c${n++}`;
    const [watcher, writer] = [await connect(id), await connect(id)];
    try {
      const seen = new Promise<ChangeEvent>((resolve) => watcher.watch('nodes/', (event) => event.type === 'changes' && resolve(event)));
      await watcher.watching(); // the watch stream is set up asynchronously
      await writer.commit(put('nodes/w', node('w')));
      const event = await seen;
      expect(event).toMatchObject({ type: 'changes', changes: [{ key: 'nodes/w', value: node('w') }] });
    } finally {
      await watcher.close();
      await writer.close();
    }
  });

  it('registers managers under leases; the oldest registration leads; a closed one is gone', async () => {
    const id = `c${n++}`;
    const [a, b] = [await connect(id), await connect(id)];
    try {
      await a.register({ nodeId: 'a', addr: '127.0.0.1:1', startedAt: 1 });
      await b.register({ nodeId: 'b', addr: '127.0.0.1:2', startedAt: 2 });
      const members = await b.members();
      expect(members.map((m) => [m.registration.nodeId, m.leader]).sort()).toEqual([
        ['a', true],
        ['b', false],
      ]);
      await a.close();
      expect((await b.members()).map((m) => [m.registration.nodeId, m.leader])).toEqual([['b', true]]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('answers STORE_UNAVAILABLE quickly while etcd is down, and works again when it is back', async () => {
    const store = await connect();
    try {
      await store.commit(put('nodes/before', node('before')));
      await etcd.kill(0);
      const started = Date.now();
      expect(await codeOf(store.get(KEYS.nodes.ref('before')))).toBe('STORE_UNAVAILABLE');
      expect(await codeOf(store.commit(put('nodes/during', node('during'))))).toBe('STORE_UNAVAILABLE');
      expect(Date.now() - started).toBeLessThan(15_000);
      await etcd.restart(0);
      let back = false;
      for (let i = 0; i < 100 && !back; i++) {
        back = (await codeOf(store.get(KEYS.nodes.ref('before')))) === undefined;
        if (!back) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(back).toBe(true);
      expect(await store.get(KEYS.nodes.ref('during'))).toBeUndefined(); // nothing refused was written
    } finally {
      await store.close();
    }
  });
});

/** Waits (bounded) until `ready()` holds; each try lets the store's I/O run. */
async function until(ready: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('EtcdStore: node records from the change feed', () => {
  it("answers node records from its feed once confirmed, sees its own writes at once and another manager's when their event arrives", async () => {
    const id = `c${n++}`;
    const [a, b] = [await connect(id), await connect(id)];
    try {
      await a.commit(put('nodes/x', node('x')));
      expect((await b.get(KEYS.nodes.ref('x')))?.value.removed).toBe(false); // read through etcd; starts the feed
      await b.watching();
      await until(async () => (await b.get(KEYS.nodes.ref('x'))) !== undefined && b.feedCacheServing, "b's feed cache to serve");
      // A removal made on a: a's next read has it at once; b's as soon as the feed delivers it.
      const x = (await a.get(KEYS.nodes.ref('x')))!;
      expect(await a.commit(put('nodes/x', node('x', { removed: true }), x.version))).toBe(true);
      expect((await a.get(KEYS.nodes.ref('x')))?.value.removed).toBe(true);
      await until(async () => (await b.get(KEYS.nodes.ref('x')))?.value.removed === true, 'b to see the removal');
      const removed = (await b.get(KEYS.nodes.ref('x')))!;
      expect(removed.version).toBeGreaterThan(x.version);
      // A commit from b that compares an old version fails, and b reads the key again: the retry with the version read commits.
      expect(await b.commit(put('nodes/x', node('x', { hostname: 'stale' }), x.version))).toBe(false);
      const again = (await b.get(KEYS.nodes.ref('x')))!;
      expect(again.version).toBe(removed.version);
      expect(await b.commit(put('nodes/x', node('x', { removed: true, hostname: 'fresh' }), again.version))).toBe(true);
      expect((await b.get(KEYS.nodes.ref('x')))?.value.hostname).toBe('fresh');
      await until(async () => (await a.get(KEYS.nodes.ref('x')))?.value.hostname === 'fresh', "a to see b's write");
      // A record added and one deleted are seen through the feed too.
      await a.commit({ compares: [{ key: 'nodes/y', version: 0 }], puts: [{ key: 'nodes/y', value: node('y') }], deletes: ['nodes/x'] });
      await until(
        async () => (await b.get(KEYS.nodes.ref('x'))) === undefined && (await b.get(KEYS.nodes.ref('y'))) !== undefined,
        'b to see the delete and the add',
      );
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a manager whose member lost the quorum stops answering from its feed within the trust window, and its reads fail', async () => {
    const cluster = await startEtcd({ size: 3 });
    let clock = Date.now();
    const id = `c${n++}`;
    const writer = await EtcdStore.connect({ connection: { endpoints: cluster.endpoints }, clusterId: id, logger: silentLogger });
    // The cut-off manager talks to member 2 only: its stream stays up when the other two are gone.
    const cut = await EtcdStore.connect({ connection: { endpoints: [cluster.endpoints[2]!] }, clusterId: id, logger: silentLogger, now: () => clock });
    try {
      await writer.commit(put('nodes/p', node('p')));
      await cut.get(KEYS.nodes.ref('p'));
      await cut.watching();
      await until(async () => (await cut.get(KEYS.nodes.ref('p'))) !== undefined && cut.feedCacheServing, 'the feed cache to serve');
      await cluster.kill(0);
      await cluster.kill(1);
      // Within the trust window the record is the one the feed had (what the quorum had when it was last confirmed)…
      expect((await cut.get(KEYS.nodes.ref('p')))?.value.id).toBe('p');
      // …and after it the cache no longer answers: the read goes to member 2, which cannot answer without a quorum.
      clock += TRUST_MS;
      expect(cut.feedCacheServing).toBe(false);
      expect(await codeOf(cut.get(KEYS.nodes.ref('p')))).toBe('STORE_UNAVAILABLE');
    } finally {
      await cut.close();
      await writer.close();
      await cluster.stop();
    }
  });
});

describe('EtcdStore over TLS with client certificates', () => {
  it('connects with the CA and client certificate, and is refused without them', async () => {
    const secured = await startEtcd({ tls: true });
    try {
      const tls = secured.tls!;
      const connection = {
        endpoints: secured.endpoints,
        cacertPem: readFileSync(tls.caFile, 'utf8'),
        certPem: readFileSync(tls.clientCert, 'utf8'),
        keyPem: readFileSync(tls.clientKey, 'utf8'),
      };
      const store = await EtcdStore.connect({ connection, clusterId: 'tls', logger: silentLogger });
      expect(await store.commit(put('nodes/t', node('t')))).toBe(true);
      await store.close();
      const { certPem: _c, keyPem: _k, ...noClientCert } = connection;
      expect(await codeOf(EtcdStore.connect({ connection: noClientCert, clusterId: 'tls', logger: silentLogger }))).toBe('STORE_UNAVAILABLE');
    } finally {
      await secured.stop();
    }
  });
});

describe('EtcdStore on an etcd with small Txn limits (--max-txn-ops 8, --max-request-bytes 64 KiB)', () => {
  let small: EtcdCluster;
  beforeAll(async () => {
    small = await startEtcd({ args: ['--max-txn-ops', '8', '--max-request-bytes', String(64 * 1024)] });
  });
  afterAll(async () => {
    await small?.stop();
  });
  const connectSmall = () => EtcdStore.connect({ connection: { endpoints: small.endpoints }, clusterId: `s${n++}`, logger: silentLogger });

  it('a Txn etcd refuses for its size is INTERNAL (a bug: retrying cannot help), not STORE_UNAVAILABLE, and writes nothing', async () => {
    const store = await connectSmall();
    try {
      const many = { compares: [], puts: Array.from({ length: 9 }, (_, i) => ({ key: `nodes/m${i}`, value: node(`m${i}`) })), deletes: [] };
      const refused = await store.commit(many).then(
        () => undefined,
        (error: unknown) => error as { code?: string; message?: string },
      );
      expect(refused?.code).toBe('INTERNAL');
      expect(refused?.message).toMatch(/refused a transaction of 0 compares and 9 writes as too large: .*too many operations in txn request/);
      const big = await store.commit(put('nodes/big', node('big', { hostname: 'h'.repeat(100_000) }))).then(
        () => undefined,
        (error: unknown) => error as { code?: string; message?: string },
      );
      expect(big?.code).toBe('INTERNAL');
      expect(big?.message).toMatch(/request is too large/);
      expect(await store.list(KEYS.nodes)).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('concurrent commits that fit one by one but not merged all commit', async () => {
    const store = await connectSmall();
    try {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.commit(put(`nodes/g${i}`, node(`g${i}`)))));
      expect(results.every(Boolean)).toBe(true);
      expect((await store.list(KEYS.nodes)).length).toBe(20);
    } finally {
      await store.close();
    }
  });
});
