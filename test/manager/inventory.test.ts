import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NODE_DOWN_AFTER_MS } from '../../src/manager/inventory.js';
import { KEYS } from '../../src/store/cluster-store.js';
import { codeOf } from '../helpers/codes.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../helpers/service.js';

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

  it('lists nodes oldest first with status and manager status, and 404s an unknown ID', async () => {
    t.clock.advance(1000);
    await joinAs('worker');
    const nodes = await t.inventory.listNodes();
    expect(nodes.map((n) => [n.role, n.managerStatus])).toEqual([
      ['manager', 'Leader'],
      ['worker', undefined],
    ]);
    expect(nodes.every((n) => n.status === 'ready')).toBe(true);
    t.clock.advance(NODE_DOWN_AFTER_MS + 1);
    expect((await t.inventory.listNodes()).every((n) => n.status === 'down')).toBe(true);
    expect(await codeOf(t.inventory.getNode('0000000000000000000000000'))).toBe('NODE_NOT_FOUND');
    expect(await codeOf(t.inventory.getNode('../etc'))).toBe('NODE_NOT_FOUND');
  });

  it('a manager whose registration is gone is Unreachable', async () => {
    await t.membership.unregister();
    const manager = (await t.inventory.listNodes()).find((n) => n.id === t.managerId);
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
