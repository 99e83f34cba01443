/**
 * Heartbeats without a durable write each (issue 20, item 2): polls mark
 * nodes in memory, a batch writes them a few dozen to a transaction, the
 * status views see the marks at once, and a write never undoes a change made
 * between the mark and the batch.
 */
import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NODE_DOWN_AFTER_MS } from '../../../src/manager/services/inventory.js';
import { LAST_SEEN_FLUSH_MS } from '../../../src/manager/services/last-seen.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';

let t: TestCluster;
// A cluster per test: the first test counts every node in the cluster and every commit, so nodes joined
// or marks left pending by another test would change its numbers.
beforeEach(async () => {
  t = await foundTestCluster();
});
afterEach(async () => {
  await t.cleanup();
});

async function joined(count: number): Promise<{ id: string; certPem: string }[]> {
  const out: { id: string; certPem: string }[] = [];
  for (let i = 0; i < count; i++) {
    const response = await t.caServer.join({ token: t.settings.joinTokens().worker, csr: freshCsr().csr }, '10.0.0.1');
    out.push({ id: response.nodeId, certPem: response.certificate });
  }
  return out;
}

const poll = async (certPem: string) => t.inventory.self(await t.authoriser.authorize(new X509Certificate(certPem), ['worker']));

describe('last-seen marks', () => {
  it('a poll writes nothing; the batch writes 150 marks in 3 transactions; views see the marks before that', async () => {
    const nodes = await joined(150);
    t.clock.advance(NODE_DOWN_AFTER_MS + 1000); // every node looks down now
    expect((await t.inventory.listNodes({ limit: 1000 })).nodes.filter((n) => n.status === 'down')).toHaveLength(151);
    const commit = vi.spyOn(t.store, 'commit');
    for (const node of nodes) await poll(node.certPem);
    expect(commit).not.toHaveBeenCalled();
    expect(t.lastSeen.pending).toBe(150);
    // This manager's views merge the marks in: ready at once.
    const listed = await t.inventory.listNodes({ limit: 1000 });
    expect(listed.nodes.filter((n) => n.status === 'ready')).toHaveLength(150);
    t.clock.advance(LAST_SEEN_FLUSH_MS);
    await vi.waitFor(() => expect(t.lastSeen.pending).toBe(0));
    expect(commit).toHaveBeenCalledTimes(3);
    commit.mockRestore();
    const stored = (await t.store.get(KEYS.nodes.ref(nodes[0]!.id)))!.value;
    expect(stored.lastSeenAt).toBe(t.clock.now() - LAST_SEEN_FLUSH_MS);
  });

  it('a removal or a renewal between the mark and the batch is kept', async () => {
    const [a, b] = await joined(2);
    t.clock.advance(60_000);
    await poll(a!.certPem);
    await poll(b!.certPem);
    const admin = await t.authoriser.authorize(t.managerCert, ['manager']);
    await t.inventory.removeNode(a!.id, { force: true }, admin);
    const renewed = await t.caServer.renew(await t.authoriser.authorize(new X509Certificate(b!.certPem), ['worker']), { csr: freshCsr().csr });
    await t.lastSeen.flush();
    expect((await t.store.get(KEYS.nodes.ref(a!.id)))!.value.removed).toBe(true);
    const bStored = (await t.store.get(KEYS.nodes.ref(b!.id)))!.value;
    expect(bStored.certSerial).toBe(new X509Certificate(renewed.certificate).serialNumber);
    expect(t.lastSeen.pending).toBe(0);
  });

  it('a batch that meets a record changed after its read is read again and sent once more whole, not a node at a time', async () => {
    const nodes = await joined(10);
    t.clock.advance(60_000);
    for (const node of nodes) await poll(node.certPem);
    const original = t.store.commit.bind(t.store);
    const ref = KEYS.nodes.ref(nodes[3]!.id);
    let changed = false;
    const commit = vi.spyOn(t.store, 'commit').mockImplementation(async (txn) => {
      if (!changed) {
        changed = true; // another manager's write lands between the batch's reads and its commit
        const entry = (await t.store.get(ref))!;
        await original({
          compares: [{ key: ref.key, version: entry.version }],
          puts: [{ key: ref.key, value: { ...entry.value, labels: { zone: 'b' } } }],
          deletes: [],
        });
      }
      return original(txn);
    });
    await t.lastSeen.flush();
    expect(commit).toHaveBeenCalledTimes(2);
    commit.mockRestore();
    expect(t.lastSeen.pending).toBe(0);
    for (const node of nodes) expect((await t.store.get(KEYS.nodes.ref(node.id)))!.value.lastSeenAt).toBe(t.clock.now());
    expect((await t.store.get(ref))!.value.labels).toEqual({ zone: 'b' });
  });

  it('a node heard from again within half the down-after window is not written again, and views still see the newer time', async () => {
    const [a] = await joined(1);
    t.clock.advance(NODE_DOWN_AFTER_MS);
    await poll(a!.certPem);
    await t.lastSeen.flush();
    const written = (await t.store.get(KEYS.nodes.ref(a!.id)))!.value.lastSeenAt;
    t.clock.advance(30_000); // the next heartbeat of a session
    const commit = vi.spyOn(t.store, 'commit');
    await poll(a!.certPem);
    expect(t.lastSeen.pending).toBe(0);
    await t.lastSeen.flush();
    expect(commit).not.toHaveBeenCalled();
    commit.mockRestore();
    expect((await t.store.get(KEYS.nodes.ref(a!.id)))!.value.lastSeenAt).toBe(written);
    const view = (await t.inventory.listNodes({ limit: 1000 })).nodes.find((n) => n.id === a!.id)!;
    expect(Date.parse(view.lastSeenAt!)).toBe(t.clock.now());
    t.clock.advance(NODE_DOWN_AFTER_MS / 2); // half the window since the write: the next heartbeat is written
    await poll(a!.certPem);
    expect(t.lastSeen.pending).toBe(1);
  });
});
