import { afterAll, describe, expect, it } from 'vitest';
import { LevelClusterStore, type InitialState } from '../../src/store/cluster-store.js';
import { SCHEMA_VERSION, type NodeRecord } from '../../src/store/records.js';
import { scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir('muster-store-');
afterAll(() => scratch.cleanup());

function node(id: string, overrides: Partial<NodeRecord> = {}): NodeRecord {
  return { schema: SCHEMA_VERSION, id, role: 'worker', hostname: 'h', labels: {}, createdAt: 1, lastSeenAt: 1, certSerial: `S${id}`, certNotAfter: 2, certRole: 'worker', removed: false, ...overrides };
}

function initial(): InitialState {
  return {
    cluster: { schema: SCHEMA_VERSION, clusterId: 'c1', certExpiryMs: 3_600_000, createdAt: 1, advertiseAddr: '127.0.0.1:4377' },
    ca: { schema: SCHEMA_VERSION, rootPem: 'ROOT\n', keyPem: 'KEY\n' },
    tokens: { schema: SCHEMA_VERSION, worker: 'w', manager: 'm', rotatedAt: { worker: 1, manager: 1 } },
    node: node('m1', { role: 'manager', certRole: 'manager' }),
    certificate: { schema: SCHEMA_VERSION, serial: 'Sm1', subject: 'm1', role: 'manager', kind: 'init', issuedAt: 1, notBefore: 0, notAfter: 2 },
  };
}

describe('LevelClusterStore', () => {
  it('initialises once and refuses a second cluster', async () => {
    const store = new LevelClusterStore(scratch.path(`db-${Math.random().toString(36).slice(2)}`));
    await store.open();
    expect(await store.getCluster()).toBeUndefined();
    await store.initialise(initial());
    await expect(store.initialise(initial())).rejects.toMatchObject({ code: 'CLUSTER_EXISTS' });
    await store.close();
    await store.close(); // idempotent
  });

  it('keeps everything across a reopen', async () => {
    const location = scratch.path(`db-${Math.random().toString(36).slice(2)}`);
    const first = new LevelClusterStore(location);
    await first.open();
    await first.initialise(initial());
    await first.putNodeWithCertificate(node('w1'), { schema: SCHEMA_VERSION, serial: 'Sw1', subject: 'w1', role: 'worker', kind: 'join', issuedAt: 2, notBefore: 1, notAfter: 3 });
    await first.putTokens({ ...initial().tokens, worker: 'w2' });
    await first.close();

    const second = new LevelClusterStore(location);
    await second.open();
    expect(await second.getCluster()).toEqual(initial().cluster);
    expect(await second.getCa()).toEqual(initial().ca);
    expect((await second.getTokens())?.worker).toBe('w2');
    expect((await second.listNodes()).map((n) => n.id).sort()).toEqual(['m1', 'w1']);
    expect(await second.getCertificate('Sw1')).toMatchObject({ subject: 'w1', kind: 'join' });
    expect(await second.getNode('nope')).toBeUndefined();
    expect((await second.listCertificates()).length).toBe(2);
    await second.close();
  });

  it('refuses a second opener of the same folder with a clear code', async () => {
    const location = scratch.path(`db-${Math.random().toString(36).slice(2)}`);
    const first = new LevelClusterStore(location);
    await first.open();
    const second = new LevelClusterStore(location);
    await expect(second.open()).rejects.toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/locked/) });
    await first.close();
  });

  it('group-commits concurrent writes, and close waits for every accepted write', async () => {
    const location = scratch.path(`db-${Math.random().toString(36).slice(2)}`);
    const first = new LevelClusterStore(location);
    await first.open();
    const ids = Array.from({ length: 300 }, (_, i) => `w${i}`);
    const writes = ids.map((id, i) =>
      i % 2 === 0
        ? first.putNodeWithCertificate(node(id), { schema: SCHEMA_VERSION, serial: `S${id}`, subject: id, role: 'worker', kind: 'join', issuedAt: 2, notBefore: 1, notAfter: 3 })
        : first.putNode(node(id)),
    );
    const closing = first.close(); // before any write has settled
    await Promise.all(writes);
    await closing;
    // The first write goes alone; the rest queue behind it and share batches.
    expect(first.commits).toBeGreaterThanOrEqual(2);
    expect(first.commits).toBeLessThan(ids.length / 10);

    const second = new LevelClusterStore(location);
    await second.open();
    expect((await second.listNodes()).map((n) => n.id).sort()).toEqual([...ids].sort());
    expect((await second.listCertificates()).length).toBe(ids.length / 2);
    await second.close();
  });

  it('fails only the caller whose record cannot be written when writes share a batch', async () => {
    const store = new LevelClusterStore(scratch.path(`db-${Math.random().toString(36).slice(2)}`));
    await store.open();
    const bad = node('bad', { labels: { n: 1n } as unknown as Record<string, string> }); // JSON cannot encode a BigInt
    const results = await Promise.allSettled([store.putNode(node('a')), store.putNode(node('b')), store.putNode(bad), store.putNode(node('c'))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((await store.listNodes()).map((n) => n.id).sort()).toEqual(['a', 'b', 'c']);
    await store.close();
  });
});
