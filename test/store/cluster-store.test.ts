import { MemoryLevel } from 'memory-level';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { KEYS, Tx, transact, type StoreDump } from '../../src/store/cluster-store.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import { LevelStore, type LevelDatabase } from '../../src/store/level-store.js';
import { SCHEMA_VERSION, type NodeRecord } from '../../src/store/records.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

const open = (): Promise<LevelStore> => LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'memory');
const tokens = (worker: string) => ({ schema: SCHEMA_VERSION, worker, manager: 'm', rotatedAt: { worker: 1, manager: 1 } }) as const;

describe('transact', () => {
  it('re-runs a read-modify-write whose read changed meanwhile, so no update is lost', async () => {
    const store = await open();
    await transact(store, async (tx) => tx.put(KEYS.tokens, tokens('0')));
    // 50 concurrent increments of one record: each reads, then writes read+1.
    await Promise.all(
      Array.from({ length: 50 }, () =>
        transact(
          store,
          async (tx) => {
            const current = await tx.get(KEYS.tokens);
            tx.put(KEYS.tokens, tokens(String(Number(current!.worker) + 1)));
          },
          { attempts: 100 },
        ),
      ),
    );
    expect((await store.get(KEYS.tokens))?.value.worker).toBe('50');
    await store.close();
  });

  it('gives up with STORE_CONFLICT when every attempt conflicts, and runs the refresh between attempts', async () => {
    const store = await open();
    let refreshes = 0;
    await expect(
      transact(
        store,
        async (tx) => {
          tx.assume(KEYS.tokens, { value: tokens('x'), version: 999 }); // a version the store never had
          tx.put(KEYS.tokens, tokens('y'));
        },
        { attempts: 3, beforeRetry: async () => void refreshes++ },
      ),
    ).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
    expect(refreshes).toBe(3);
    await store.close();
  });

  it('refuses to write a record that does not match its schema', async () => {
    const tx = new Tx(await open());
    expect(() => tx.put(KEYS.tokens, { schema: SCHEMA_VERSION } as never)).toThrow(/does not match its schema/);
  });

  it('commits nothing for a read-only attempt', async () => {
    const store = await open();
    const commit = vi.spyOn(store, 'commit');
    expect(await transact(store, async (tx) => (await tx.get(KEYS.cluster)) ?? 'none')).toBe('none');
    expect(commit).not.toHaveBeenCalled();
    await store.close();
  });
});

describe('dump: every record at one point, on both backends', () => {
  const scratch = scratchDir('muster-dump-');
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd();
  }, slow(60_000));
  afterAll(async () => {
    await etcd?.stop();
    scratch.cleanup();
  });

  let n = 0;
  /** Each backend, and a dump that reads in small pages (etcd: 7 records a read) so that writes land between the reads. */
  const backends: { name: string; open: () => Promise<{ store: LevelStore | EtcdStore; dump: () => Promise<StoreDump> }> }[] = [
    {
      name: 'LevelDB',
      open: async () => {
        const store = await LevelStore.openDir(scratch.path(`db${n++}`), { create: true });
        return { store, dump: () => store.dump() };
      },
    },
    {
      name: 'etcd',
      open: async () => {
        const store = await EtcdStore.connect({ connection: { endpoints: etcd.endpoints }, clusterId: `dump${n++}`, logger: silentLogger });
        return { store, dump: () => store.dump(7) };
      },
    },
  ];
  const node = (id: string, hostname: string): NodeRecord => ({
    schema: SCHEMA_VERSION,
    id,
    role: 'worker',
    hostname,
    labels: {},
    createdAt: 1,
    lastSeenAt: 1,
    certSerial: `S${id}`,
    certNotAfter: 2,
    certRole: 'worker',
    removed: false,
  });
  const ids = Array.from({ length: 100 }, (_, i) => `n${String(i).padStart(3, '0')}`);
  /** One commit that gives all 100 nodes the hostname `generation`. */
  const generation = (g: number) => ({ compares: [], puts: ids.map((id) => ({ key: KEYS.nodes.ref(id).key, value: node(id, `g${g}`) })), deletes: [] });

  for (const backend of backends) {
    it(`${backend.name}: a dump taken while commits rewrite every record sees one commit's state, never a mix`, { timeout: slow(60_000) }, async () => {
      const { store, dump } = await backend.open();
      try {
        expect(await store.commit(generation(0))).toBe(true);
        let writing = true;
        let g = 0;
        const writer = (async () => {
          while (writing) expect(await store.commit(generation(++g))).toBe(true);
        })();
        for (let round = 0; round < 15; round++) {
          const { revision, records } = await dump();
          const hostnames = new Set(records.map((r) => (r.value as NodeRecord).hostname));
          expect(records.map((r) => r.key)).toEqual(ids.map((id) => KEYS.nodes.ref(id).key));
          expect([...hostnames]).toHaveLength(1);
          expect(revision).toBeGreaterThan(0);
        }
        writing = false;
        await writer;
        expect(g).toBeGreaterThan(1); // the writer did run between the dumps
      } finally {
        await store.close();
      }
    });

    it(`${backend.name}: values exactly as stored, in key order, without the backend's bookkeeping (revision counter, manager registrations)`, async () => {
      const { store, dump } = await backend.open();
      try {
        const tokens = {
          schema: SCHEMA_VERSION,
          worker: { hash: 'a'.repeat(64), sealed: { alg: 'A256GCM', iv: 'aXY=', data: 'ZGF0YQ==' } },
          manager: 'm',
          rotatedAt: { worker: 1, manager: 2 },
        } as const;
        await transact(store, async (tx) => {
          tx.put(KEYS.tokens, tokens);
          tx.put(KEYS.nodes.ref('b'), node('b', 'hb'));
          tx.put(KEYS.nodes.ref('a'), node('a', 'ha'));
        });
        await store.register({ nodeId: 'a', addr: '127.0.0.1:1', startedAt: 1 });
        const { revision, records } = await dump();
        expect(records).toEqual([
          { key: 'meta/tokens', value: tokens },
          { key: 'nodes/a', value: node('a', 'ha') },
          { key: 'nodes/b', value: node('b', 'hb') },
        ]);
        expect(revision).toBeGreaterThanOrEqual((await store.get(KEYS.tokens))!.version); // etcd's revision counts the registration too
      } finally {
        await store.close();
      }
    });
  }
});
