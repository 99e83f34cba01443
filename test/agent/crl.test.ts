/**
 * A running node and the cluster's CRL (issue 17): it fetches the CRL when
 * its poll announces a newer one, and moves away from a manager whose
 * certificate is on it, here a removed manager that still serves (as an
 * impostor with its kept certificate would).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { joinCluster } from '../../src/agent/join.js';
import { NodeAgent } from '../../src/agent/node-agent.js';
import { recordingLogger } from '../../src/core/logger.js';
import { systemRandom } from '../../src/core/random.js';
import { dataDirLayout } from '../../src/config/paths.js';
import { buildApp, type MusterApp } from '../../src/manager/http/app.js';
import { scratchDir } from '../helpers/openssl.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../helpers/service.js';

const scratch = scratchDir('muster-agent-crl-');
let t: TestCluster;
const apps: MusterApp[] = [];
const hits = new Map<string, string[]>();
afterAll(async () => {
  await Promise.all(apps.map((app) => app.close()));
  await t?.cleanup();
  scratch.cleanup();
});

/** Serves the cluster's routes with `tls` on a port of its own, recording which routes it answered. */
async function serve(name: string, tls: { keyPem: string; certPem: string }): Promise<string> {
  const app = await buildApp({ services: t.services, tls, logger: pino({ level: 'silent' }) });
  hits.set(name, []);
  app.addHook('onRequest', async (request) => void hits.get(name)!.push(request.url));
  await app.listen({ host: '127.0.0.1', port: 0 });
  apps.push(app);
  return `127.0.0.1:${(app.server.address() as { port: number }).port}`;
}

describe('a running node and the CRL', () => {
  let founder: string;
  let removed: string;
  let removedId: string;
  beforeAll(async () => {
    t = await foundTestCluster({ shared: true });
    founder = await serve('founder', t.managerTls);
    await t.membership.register(founder); // the serving managers the polls name
    const key = freshCsr();
    const m2 = await t.caServer.join({ token: t.settings.joinTokens().manager, csr: key.csr, managerAddr: '127.0.0.1:4400' }, '10.0.0.2');
    removedId = m2.nodeId;
    removed = await serve('m2', { keyPem: key.keyPem, certPem: m2.certificate });
  });

  it('fetches the CRL its poll announces, and moves from a manager on it to one that is not', async () => {
    const layout = dataDirLayout(scratch.path('w'));
    const logger = recordingLogger();
    await joinCluster({ token: t.settings.joinTokens().worker, managerAddr: founder, layout, hostname: 'w', clock: t.clock, random: systemRandom, logger });
    const agent = await NodeAgent.load({ layout, clock: t.clock, random: systemRandom, logger, preferManager: removed });
    try {
      await agent.poll();
      expect(agent.crlNumber).toBeDefined(); // the first poll fetches the (empty) list
      expect(hits.get('m2')).toContain('/v1/crl');

      const admin = await t.authoriser.authorize(t.managerCert, ['manager']);
      await t.inventory.removeNode(removedId, { force: true }, admin);
      const announced = t.revocations.number!;
      expect(announced).toBeGreaterThan(0);
      hits.set('founder', []);
      await agent.poll(); // answered by m2 (it still serves): announces the new list; the node fetches it and sees m2 on it
      expect(agent.crlNumber).toBeGreaterThanOrEqual(announced);
      expect(logger.records.some((r) => r.message === 'the manager this node talked to is on the CRL; moving to another')).toBe(true);
      hits.set('m2', []);
      await agent.poll(); // m2's certificate is refused at the handshake now; the founder answers
      expect(hits.get('m2')).toEqual([]);
      expect(hits.get('founder')).toContain('/v1/nodes/self');
      // With no newer list announced, a node still fetches a fresh CRL every half hour.
      hits.set('founder', []);
      await agent.poll();
      expect(hits.get('founder')).not.toContain('/v1/crl');
      t.clock.advance(31 * 60_000);
      await agent.poll();
      expect(hits.get('founder')).toContain('/v1/crl');
    } finally {
      await agent.stop();
    }
  });

  it('a node stopping while it fetches the CRL stops quietly (its stop cut the fetch; nothing to warn about)', async () => {
    // A manager whose CRL answer waits until released: the node is stopped while its fetch is under way.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let fetching: () => void = () => undefined;
    const fetchStarted = new Promise<void>((resolve) => (fetching = resolve));
    const app = await buildApp({ services: t.services, tls: t.managerTls, logger: pino({ level: 'silent' }) });
    app.addHook('onRequest', async (request) => {
      if (!request.url.startsWith('/v1/crl')) return;
      fetching();
      await held;
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    apps.push(app);
    const slow = `127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const layout = dataDirLayout(scratch.path('quiet'));
    const logger = recordingLogger();
    await joinCluster({ token: t.settings.joinTokens().worker, managerAddr: founder, layout, hostname: 'quiet', clock: t.clock, random: systemRandom, logger });
    const agent = await NodeAgent.load({ layout, clock: t.clock, random: systemRandom, logger, preferManager: slow });
    try {
      const polled = agent.poll().catch((error: unknown) => error);
      await fetchStarted;
      await agent.stop();
      await polled;
      expect(logger.records.filter((r) => r.level === 'warn').map((r) => r.message)).toEqual([]);
    } finally {
      release();
    }
  });
});
