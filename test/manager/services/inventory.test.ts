import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { NodeList } from '../../../src/api/schemas.js';
import { newId } from '../../../src/core/ids.js';
import { systemRandom } from '../../../src/core/random.js';
import { NODE_DOWN_AFTER_MS, type NodePageQuery } from '../../../src/manager/services/inventory.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { codeOf } from '../../helpers/codes.js';
import { nodeIds, nodeRecord, seedNodes } from '../../helpers/node-records.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';

let t: TestCluster;
beforeEach(async () => {
  t = await foundTestCluster({ shared: true });
});
afterEach(async () => {
  await t.cleanup();
});

async function joinAs(role: 'worker' | 'manager') {
  const response = await t.caServer.join({ token: t.settings.joinTokens()[role], csr: freshCsr().csr, hostname: `${role}-host` }, '10.0.0.1');
  return { response, cert: new X509Certificate(response.certificate) };
}

describe('node lifecycle', () => {
  it('needs force to remove a node that is still active', async () => {
    const worker = await joinAs('worker');
    expect(await codeOf(t.inventory.removeNode(worker.response.nodeId, { force: false }))).toBe('NODE_ACTIVE');
    expect((await t.inventory.removeNode(worker.response.nodeId, { force: true })).status).toBe('removed');
  });

  it('never demotes or removes the last serving manager', async () => {
    expect(await codeOf(t.inventory.setRole(t.managerId, 'worker'))).toBe('LAST_MANAGER');
    expect(await codeOf(t.inventory.removeNode(t.managerId, { force: true }))).toBe('LAST_MANAGER');
    // A second manager that is not serving (registered) does not count.
    const second = await joinAs('manager');
    expect(await codeOf(t.inventory.setRole(t.managerId, 'worker'))).toBe('LAST_MANAGER');
    await t.store.register({ nodeId: second.response.nodeId, addr: '10.0.0.2:4377', startedAt: 1 });
    t.clock.advance(1_000); // the member list is read at most once a second
    // (the embedded store holds one registration: the second manager is now the serving one)
    await expect(t.inventory.setRole(t.managerId, 'worker')).resolves.toMatchObject({ role: 'worker' });
    expect(await codeOf(t.inventory.setRole(second.response.nodeId, 'worker'))).toBe('LAST_MANAGER');
    expect((await t.store.get(KEYS.managers))?.value.ids).toEqual([second.response.nodeId]);
  });

  it('refuses a promotion on the embedded store', async () => {
    const embedded = await foundTestCluster();
    try {
      const worker = await embedded.caServer.join({ token: embedded.settings.joinTokens().worker, csr: freshCsr().csr }, 'a');
      expect(await codeOf(embedded.inventory.setRole(worker.nodeId, 'manager'))).toBe('EMBEDDED_STORE');
    } finally {
      await embedded.cleanup();
    }
  });

  it('lists nodes in ID order with status and manager status, and 404s an unknown ID', async () => {
    t.clock.advance(1000);
    await joinAs('worker');
    const { nodes, next } = await t.inventory.listNodes();
    expect(next).toBeUndefined();
    expect(nodes.map((n) => n.id)).toEqual(nodes.map((n) => n.id).sort());
    expect(nodes.map((n) => [n.role, n.managerStatus]).sort()).toEqual([
      ['manager', 'Leader'],
      ['worker', undefined],
    ]);
    expect(nodes.every((n) => n.status === 'ready')).toBe(true);
    t.clock.advance(NODE_DOWN_AFTER_MS + 1);
    expect((await t.inventory.listNodes()).nodes.every((n) => n.status === 'down')).toBe(true);
    expect(await codeOf(t.inventory.getNode('0000000000000000000000000'))).toBe('NODE_NOT_FOUND');
    expect(await codeOf(t.inventory.getNode('../etc'))).toBe('NODE_NOT_FOUND');
  });

  it('a manager whose registration is gone is Unreachable', async () => {
    await t.membership.unregister();
    const manager = (await t.inventory.listNodes()).nodes.find((n) => n.id === t.managerId);
    expect(manager?.managerStatus).toBe('Unreachable');
  });
});

describe('concurrent changes to one node record', () => {
  it('a heartbeat, a promotion and a renewal at once: none is lost, 100 times', async () => {
    const worker = await joinAs('worker');
    const id = worker.response.nodeId;
    let cert = worker.cert;
    for (let round = 0; round < 100; round++) {
      const role = round % 2 === 0 ? 'manager' : 'worker';
      t.clock.advance(20_000); // each heartbeat writes lastSeenAt
      const caller = await t.authoriser.authorize(cert, ['manager', 'worker']);
      const [, , renewed] = await Promise.all([t.inventory.self(caller), t.inventory.setRole(id, role), t.caServer.renew(caller, { csr: freshCsr().csr })]);
      cert = new X509Certificate(renewed.certificate);
      const node = (await t.store.get(KEYS.nodes.ref(id)))!.value;
      expect(node.role).toBe(role); // the promotion or demotion was not overwritten
      expect(node.certSerial).toBe(cert.serialNumber); // nor the renewal
      expect(node.lastSeenAt).toBe(t.clock.now()); // nor the heartbeat
      const index = (await t.store.get(KEYS.managers))!.value.ids;
      expect(index.includes(id)).toBe(role === 'manager');
    }
  });
});

describe('node list pages', () => {
  /** Every page from `query.after` on, following `next` as the API client does. */
  async function allPages(query: NodePageQuery): Promise<NodeList[]> {
    const pages: NodeList[] = [];
    let after = query.after;
    do {
      const page = await t.inventory.listNodes({ ...query, after });
      pages.push(page);
      after = page.next;
    } while (after !== undefined);
    return pages;
  }
  const idsOf = (pages: NodeList[]): string[] => pages.flatMap((p) => p.nodes.map((n) => n.id));

  it('cover every node exactly once, in ID order, with next on every page but the last; removed nodes only with all', async () => {
    const nodes = Array.from({ length: 80 }, (_, i) => nodeRecord(newId(systemRandom), { removed: i % 4 === 0 }));
    await seedNodes(t.store, nodes);
    const live = [t.managerId, ...nodes.filter((n) => !n.removed).map((n) => n.id)].sort();
    const pages = await allPages({ limit: 10 });
    expect(idsOf(pages)).toEqual(live);
    expect(pages.map((p) => p.nodes.length)).toEqual([10, 10, 10, 10, 10, 10, 1]);
    for (const page of pages.slice(0, -1)) expect(page.next).toBe(page.nodes.at(-1)!.id);
    expect(pages.at(-1)!.next).toBeUndefined();
    // A page that ends exactly at the last node is the last page.
    expect((await t.inventory.listNodes({ limit: 61 })).next).toBeUndefined();
    expect((await t.inventory.listNodes({ limit: 60 })).next).toBe(live[59]);

    const everything = await allPages({ limit: 7, all: true });
    expect(idsOf(everything)).toEqual([t.managerId, ...nodes.map((n) => n.id)].sort());
    expect(everything.every((p) => p.nodes.length <= 7)).toBe(true);
    expect(everything.flatMap((p) => p.nodes).filter((n) => n.status === 'removed')).toHaveLength(20);
  });

  it('are at most 1000 nodes (500 by default), read from the store 500 records at a time', async () => {
    await seedNodes(
      t.store,
      nodeIds('k', 1_100).map((id) => nodeRecord(id)),
    );
    const list = vi.spyOn(t.store, 'list');
    const first = await t.inventory.listNodes();
    expect(first.nodes).toHaveLength(500);
    expect(first.next).toBe(first.nodes[499]!.id);
    expect((await t.inventory.listNodes({ limit: 5_000 })).nodes).toHaveLength(1_000);
    expect(list.mock.calls.length).toBeGreaterThan(3);
    expect(list.mock.calls.every(([, page]) => page?.limit === 500)).toBe(true);
  });

  it('fill up across chunks of removed nodes, and end early (with next) after 10,000 records of them', async () => {
    await t.store.commit({ compares: [], puts: [], deletes: [KEYS.nodes.ref(t.managerId).key] }); // its random ID would land anywhere
    const [a, g, n] = [nodeIds('a', 2), nodeIds('g', 5), nodeIds('n', 5)];
    await seedNodes(
      t.store,
      [...a, ...g, ...n].map((id) => nodeRecord(id)),
    );
    await seedNodes(
      t.store,
      [...nodeIds('f', 1_200), ...nodeIds('m', 10_200)].map((id) => nodeRecord(id, { removed: true })),
    );
    const pages = await allPages({ limit: 3 });
    expect(idsOf(pages)).toEqual([...a, ...g, ...n]);
    // a0 a1 g0 | g1 g2 g3 | g4 and 9,999 removed: stop | n0 n1 n2 | n3 n4
    expect(pages.map((p) => p.nodes.length)).toEqual([3, 3, 1, 3, 2]);
    expect(pages[2]!.next).toMatch(/^m/);
  });

  it('resolve a hostname or ID prefix by paging through the store', async () => {
    const twins = nodeIds('q', 1_200);
    await seedNodes(
      t.store,
      twins.map((id) => nodeRecord(id, { hostname: 'twin' })),
    );
    await seedNodes(t.store, [
      nodeRecord('z'.repeat(25), { hostname: 'solo' }),
      nodeRecord('y'.repeat(25), { hostname: 'pair', removed: true }),
      nodeRecord('x'.repeat(25), { hostname: 'pair' }),
    ]);
    const list = vi.spyOn(t.store, 'list');
    expect((await t.inventory.getNode('solo')).id).toBe('z'.repeat(25));
    expect((await t.inventory.getNode('pair')).id).toBe('x'.repeat(25)); // a live node before a removed one
    expect((await t.inventory.getNode(twins[1_199]!)).hostname).toBe('twin');
    await expect(t.inventory.getNode('twin')).rejects.toThrow(/^1200 nodes match twin: (q\d{24} \(twin\), ){5}…$/);
    await expect(t.inventory.getNode(twins[1_199]!.slice(0, -1))).rejects.toThrow(/^10 nodes match/); // …1190 to …1199
    expect(list.mock.calls.every(([, page]) => page?.limit === 500)).toBe(true);
  });
});
