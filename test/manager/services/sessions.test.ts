/**
 * Node sessions over real HTTPS (issue 20): a worker long-polls
 * GET /v1/nodes/self?wait= on one kept-alive connection. The answer waits
 * while nothing concerns the node (the fake clock never reaches the wait),
 * comes at once when the cluster's expiry is cut and when the node is
 * removed, and the connection is the same one throughout;
 * last-seen writes do not wake it; a stopping manager answers parked polls.
 */
import type { AddressInfo, Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../../../src/api/client.js';
import { createDispatcher, send } from '../../../src/api/transport.js';
import { isMusterError } from '../../../src/core/errors.js';
import { buildApp, type MusterApp } from '../../../src/manager/http/app.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';
import { slow } from '../../helpers/slowdown.js';

let cluster: TestCluster;
let app: MusterApp;
let address = '';
let connections: Set<Socket>;
let clients: ApiClient[];

// Each test gets its own cluster, sessions and server: a test that cuts the expiry, removes nodes,
// parks thousands of sessions or stops the sessions leaves nothing to the next.
beforeEach(async () => {
  cluster = await foundTestCluster();
  cluster.services.sessions.start();
  connections = new Set();
  clients = [];
  app = await buildApp({ services: cluster.services, tls: cluster.managerTls, logger: pino({ level: 'silent' }) });
  app.server.on('secureConnection', (socket: Socket) => connections.add(socket));
  await app.listen({ host: '127.0.0.1', port: 0 });
  address = `127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});
afterEach(async () => {
  cluster.services.sessions.stop();
  // A test that failed with a poll still open leaves its connection: end it (a no-op for a client already closed).
  for (const client of clients) await client.destroy();
  await app.close();
  await cluster.cleanup();
});

async function worker(): Promise<{ client: ApiClient; nodeId: string }> {
  const { csr, keyPem } = freshCsr();
  const joined = await cluster.caServer.join({ token: cluster.settings.joinTokens().worker, csr }, '10.0.0.1');
  const client = new ApiClient({ managers: [address], tls: { rootPem: joined.rootCA, certPem: joined.certificate, keyPem } });
  clients.push(client);
  return { client, nodeId: joined.nodeId };
}

/** Whether `promise` is still pending after the event loop has had `ms` to run. */
async function pending(promise: Promise<unknown>, ms = 300): Promise<boolean> {
  const marker = Symbol('pending');
  return (
    (await Promise.race([
      promise.then(
        () => undefined,
        () => undefined,
      ),
      new Promise((resolve) => setTimeout(() => resolve(marker), ms)),
    ])) === marker
  );
}

describe('GET /v1/nodes/self?wait= (a session)', () => {
  it('parks while nothing concerns the node, and answers at once when the expiry is cut; one connection throughout', async () => {
    const { client } = await worker();
    const first = await client.self(); // a plain poll, on the connection the session will keep
    expect(first.renewNow).toBe(false);
    const opened = connections.size;
    await new Promise((resolve) => setTimeout(resolve, 20)); // as the agent polls: on a later tick, when undici has the connection back
    const poll = client.self(30_000);
    expect(await pending(poll)).toBe(true);
    expect(cluster.services.sessions.parked).toBe(1);
    await cluster.services.lastSeen.flush(); // last-seen batches rewrite the record: that does not wake it
    expect(await pending(poll)).toBe(true);
    await cluster.settings.updateCluster({ certExpiry: '1h' });
    const answer = await poll;
    expect(answer).toMatchObject({ renewNow: true, reason: 'cert-expiry', certExpiry: '1h' });
    expect(connections.size).toBe(opened);
    await client.close();
  });

  it('answers with NODE_REMOVED the moment the node is removed', async () => {
    const { client, nodeId } = await worker();
    const poll = client.self(30_000);
    expect(await pending(poll)).toBe(true);
    await cluster.inventory.removeNode(nodeId, { force: true });
    const refused = await poll.then(
      () => 'answered',
      (error: unknown) => (isMusterError(error) ? error.code : String(error)),
    );
    expect(refused).toBe('NODE_REMOVED');
    await client.close();
  });

  it("another node's removal changes the CRL list: every parked node hears the new CRL number at once", async () => {
    const a = await worker();
    const b = await worker();
    const before = await a.client.self();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const poll = a.client.self(30_000);
    expect(await pending(poll)).toBe(true);
    await cluster.inventory.removeNode(b.nodeId, { force: true });
    const answer = await poll;
    expect(answer.renewNow).toBe(false);
    expect(answer.crlNumber).toBeGreaterThan(before.crlNumber ?? -1);
    await a.client.close();
    await b.client.close();
  });

  it('asks for a longer spread window when many nodes are in session here (10 ms each, from 60 s up to 5 minutes), on every node told at once', async () => {
    const sessions = cluster.services.sessions;
    expect(sessions.renewSpreadMs()).toBeUndefined();
    const many = Array.from({ length: 7_000 }, (_, i) => sessions.park({ id: `many${i}`, role: 'worker' }, 3_600_000));
    expect(sessions.parked).toBe(7_000);
    expect(sessions.renewSpreadMs()).toBe(70_000);
    // A real node parked among them is told to renew with that window when the expiry is cut.
    const { client } = await worker();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const poll = client.self(30_000);
    expect(await pending(poll)).toBe(true);
    await cluster.settings.updateCluster({ certExpiry: '1h' });
    expect(await poll).toMatchObject({ renewNow: true, reason: 'cert-expiry', renewSpread: '1m10s' });
    expect(await Promise.all(many)).toEqual(many.map(() => true));
    expect(sessions.parked).toBe(0);
    expect(sessions.renewSpreadMs()).toBe(70_010); // the 7,001 woken together count until the next time
    const more = Array.from({ length: 40_000 }, (_, i) => sessions.park({ id: `more${i}`, role: 'worker' }, 3_600_000));
    expect(sessions.renewSpreadMs()).toBe(300_000);
    await cluster.settings.updateCluster({ certExpiry: '2160h' });
    await Promise.all(more);
    await client.close();
  });

  it('a wait runs out at the deadline of the clock; a stopping manager answers what is parked', async () => {
    const { client } = await worker();
    const poll = client.self(30_000);
    expect(await pending(poll)).toBe(true);
    cluster.clock.advance(30_000);
    expect((await poll).renewNow).toBe(false);
    const again = client.self(30_000);
    expect(await pending(again)).toBe(true);
    cluster.services.sessions.stop();
    expect((await again).renewNow).toBe(false);
    expect(cluster.services.sessions.parked).toBe(0);
    await client.close();
  });

  it('refuses a wait that is not 1-120 seconds (121 to 999 too: refused, not cut to 120), and asks for a certificate first', async () => {
    const { csr, keyPem } = freshCsr();
    const joined = await cluster.caServer.join({ token: cluster.settings.joinTokens().worker, csr }, '10.0.0.1');
    const dispatcher = createDispatcher({ tls: { ca: joined.rootCA, cert: joined.certificate, key: keyPem } });
    try {
      for (const wait of ['0', '121x', '-1', 'abc', '1000', '121', '999']) {
        // A wait taken would park the poll (the fake clock never ends it): the short timeout fails the test then.
        const res = await send({ dispatcher, url: `https://${address}/v1/nodes/self?wait=${wait}`, method: 'GET', timeoutMs: slow(3_000) });
        expect(res.status, wait).toBe(400);
        expect(JSON.parse(res.body.toString('utf8')), wait).toMatchObject({ code: 'BODY_INVALID' });
        expect((await app.inject({ method: 'GET', url: `/v1/nodes/self?wait=${wait}` })).statusCode, wait).toBe(401);
      }
    } finally {
      await dispatcher.close();
    }
  });
});
