/**
 * A cluster on 5-minute certificates (issue 31), over real HTTPS with the
 * manager's routes and real node agents in sessions, all on one fake clock:
 * every node's certificate stays valid across several lifetimes (each
 * successor arrives before its predecessor ends, and starts before it
 * ends), and a node cut off from the managers through a whole renewal
 * window renews its expired certificate within the grace, within one retry
 * backoff (30 s at this lifetime) of the managers being reachable again.
 * And every request a node makes in session (long polls, CRL fetches,
 * renewals) goes over its one connection: the manager sees one TLS
 * handshake per node, not one per renewal.
 */
import type { AddressInfo } from 'node:net';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinCluster } from '../../src/agent/join.js';
import { NodeAgent } from '../../src/agent/node-agent.js';
import { recordingLogger } from '../../src/core/logger.js';
import { systemRandom } from '../../src/core/random.js';
import { dataDirLayout } from '../../src/config/paths.js';
import { buildApp, type MusterApp } from '../../src/manager/http/app.js';
import { scratchDir } from '../helpers/openssl.js';
import { foundTestCluster, type TestCluster } from '../helpers/service.js';

const MINUTE = 60_000;
const LIFETIME = 5 * MINUTE;
const scratch = scratchDir('muster-short-expiry-');
let t: TestCluster;
let app: MusterApp;
let address = '';
/** Node IDs whose connections the manager's side of the network drops (a cut link), and each node's open connections. */
const cut = new Set<string>();
const sockets = new Map<string, Set<TLSSocket>>();
/** TLS handshakes each node made with the manager. */
const handshakes = new Map<string, number>();
const cnOf = (socket: TLSSocket): string | undefined => {
  const cn = socket.getPeerCertificate()?.subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
};

/** Cuts a node's link: its open connections drop, new ones drop once their handshake shows who it is (before any request is read). */
function cutOff(id: string): void {
  cut.add(id);
  for (const socket of sockets.get(id) ?? []) socket.destroy();
}

beforeAll(async () => {
  t = await foundTestCluster();
  t.services.sessions.start();
  app = await buildApp({ services: t.services, tls: t.managerTls, logger: pino({ level: 'silent' }) });
  app.server.prependListener('secureConnection', (socket: TLSSocket) => {
    const cn = cnOf(socket);
    if (cn === undefined) return;
    if (cut.has(cn)) return void socket.destroy();
    handshakes.set(cn, (handshakes.get(cn) ?? 0) + 1);
    const open = sockets.get(cn) ?? new Set<TLSSocket>();
    sockets.set(cn, open.add(socket));
    socket.once('close', () => open.delete(socket));
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  address = `127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  await t.membership.register(address);
  await t.settings.updateCluster({ certExpiry: '5m' });
});
afterAll(async () => {
  t.services.sessions.stop();
  await app.close();
  await t.cleanup();
  scratch.cleanup();
});

/** One certificate a node held: its validity and when the node had it. */
interface Held {
  notBefore: number;
  notAfter: number;
  heldFrom: number;
}

interface RunningNode {
  id: string;
  logger: ReturnType<typeof recordingLogger>;
  agent: NodeAgent;
  certs: Held[];
}

async function startNode(name: string): Promise<RunningNode> {
  const layout = dataDirLayout(scratch.path(name));
  const logger = recordingLogger();
  await joinCluster({ token: t.settings.joinTokens().worker, managerAddr: address, layout, hostname: name, clock: t.clock, random: systemRandom, logger });
  const certs: Held[] = [];
  const note = (certPem: string): void => {
    const cert = new X509Certificate(certPem);
    certs.push({ notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo), heldFrom: t.clock.now() });
  };
  const agent = await NodeAgent.load({
    layout,
    clock: t.clock,
    random: systemRandom,
    logger,
    renewerOptions: { session: true, pollMs: 30_000 },
    onRenewed: ({ tls }) => note(tls.certPem),
  });
  note(agent.tls.certPem);
  agent.start();
  return { id: agent.state.nodeId, logger, agent, certs };
}

/**
 * Lets the real I/O that the last clock step set off finish before the next
 * step: a node whose renewal is due is given up to 300 ms of real time to
 * schedule the next one (a renewal done, or a retry planned), unless a timer
 * already due must fire first; after that the clock moves on (a renewal
 * may wait for a long poll that ends at the next step). Real time only
 * bounds the wait; no time is slept away.
 */
async function settle(nodes: readonly RunningNode[]): Promise<void> {
  const deadline = Date.now() + 300;
  for (;;) {
    await new Promise((resolve) => setImmediate(resolve));
    const now = t.clock.now();
    const busy = nodes.some((n) => (n.agent.nextRenewalAt ?? Infinity) <= now);
    if (!busy || (t.clock.nextDue() ?? Infinity) <= now || Date.now() > deadline) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Moves the fake clock on by `ms` in one-second steps, settling after each. */
async function run(nodes: readonly RunningNode[], ms: number, each?: () => void): Promise<void> {
  const end = t.clock.now() + ms;
  while (t.clock.now() < end) {
    t.clock.advance(Math.min(1_000, end - t.clock.now()));
    await settle(nodes);
    each?.();
  }
}

/** Each certificate is in hand before the one before it ends, and valid from before that end. */
function gaps(certs: readonly Held[]): string[] {
  const found: string[] = [];
  for (let i = 1; i < certs.length; i++) {
    const before = certs[i - 1]!;
    const next = certs[i]!;
    if (next.heldFrom >= before.notAfter)
      found.push(`certificate ${i} arrived ${(next.heldFrom - before.notAfter) / 1000}s after certificate ${i - 1} expired`);
    if (next.notBefore > before.notAfter) found.push(`certificate ${i} starts after certificate ${i - 1} ends`);
  }
  return found;
}

describe('a cluster at --cert-expiry 5m', () => {
  let nodes: RunningNode[] = [];
  beforeAll(async () => {
    nodes = [await startNode('a'), await startNode('b'), await startNode('c')];
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.agent.stop()));
  });

  it('keeps every node certificate valid across six lifetimes, with no gap between a certificate and its successor', async () => {
    const start = t.clock.now();
    await run(nodes, 6 * LIFETIME, () => {
      for (const node of nodes)
        expect(node.agent.notAfter, `${node.id} holds a valid certificate at ${t.clock.now() - start} ms`).toBeGreaterThan(t.clock.now());
    });
    for (const node of nodes) {
      expect(gaps(node.certs)).toEqual([]);
      // Renewed 50–80% into each 5-minute lifetime: 7 to 12 renewals in 30 minutes, not a loop.
      expect(node.certs.length - 1).toBeGreaterThanOrEqual(7);
      expect(node.certs.length - 1).toBeLessThanOrEqual(12);
      for (const cert of node.certs.slice(1)) expect(cert.notAfter - cert.heldFrom).toBeLessThanOrEqual(LIFETIME);
    }
  });

  it('a node cut off through a whole renewal window renews its expired certificate within the grace, within 30 s of the link coming back', async () => {
    const late = nodes[0]!;
    const others = nodes.slice(1);
    const held = late.certs.at(-1)!;
    cutOff(late.id);
    // Until 30 s past the certificate's end: the whole window (and its retries) is missed.
    await run(nodes, held.notAfter + 30_000 - t.clock.now());
    expect(late.certs.at(-1)).toBe(held);
    expect(late.agent.notAfter).toBeLessThan(t.clock.now());
    cut.delete(late.id);
    const back = t.clock.now();
    await run(nodes, 31_000);
    const recovered = late.certs.at(-1)!;
    expect(recovered).not.toBe(held);
    expect(recovered.heldFrom - back).toBeLessThanOrEqual(31_000);
    expect(recovered.notAfter).toBeGreaterThan(t.clock.now());
    // A renewal after expiry is news (info); the hundreds on time are routine (debug: a large cluster on short certificates would flood journald).
    expect(t.logger.records.filter((r) => r.message === 'node renewed after its certificate expired').map((r) => r.level)).toEqual(['info']);
    expect(new Set(t.logger.records.filter((r) => r.message === 'node renewed').map((r) => r.level))).toEqual(new Set(['debug']));
    // And then on schedule again, like the others, with no gap from here on.
    const from = late.certs.length - 1;
    await run(nodes, 2 * LIFETIME);
    expect(gaps(late.certs.slice(from))).toEqual([]);
    expect(late.certs.length - 1 - from).toBeGreaterThanOrEqual(2);
    for (const node of others) expect(gaps(node.certs)).toEqual([]);
  });

  it('every request of a node in session goes over its one connection: never two open, no handshake per renewal; a renewal out of schedule cuts the parked poll short', async () => {
    const node = nodes[1]!;
    const handshakesBefore = handshakes.get(node.id) ?? 0;
    const connected = (sockets.get(node.id)?.size ?? 0) > 0; // run alone, the session opens its connection at the first step
    const certsBefore = node.certs.length;
    const crlBefore = node.agent.crlNumber;
    let most = 0;
    // Two lifetimes with a CRL change in the middle: renewals, long polls and a CRL fetch.
    await run(nodes, LIFETIME, () => (most = Math.max(most, sockets.get(node.id)?.size ?? 0)));
    // A node removed: its certificate goes on the CRL, and the others fetch the new list.
    const removed = nodes.pop()!;
    await t.services.inventory.removeNode(removed.id, { force: true });
    await run(nodes, LIFETIME, () => (most = Math.max(most, sockets.get(node.id)?.size ?? 0)));
    nodes.push(removed);
    expect(node.agent.crlNumber).toBeGreaterThan(crlBefore ?? -1);
    const renewals = node.certs.length - certsBefore;
    expect(renewals).toBeGreaterThanOrEqual(2);
    expect(most).toBe(1);
    // Renewals too go on over the one connection: the renewed certificate speaks there, no new handshake.
    expect((handshakes.get(node.id) ?? 0) - handshakesBefore).toBe(connected ? 0 : 1);

    // A renewal asked for now, while the session's poll is parked on the manager's (fake, stopped) clock: without
    // the cut it would wait behind the poll until the clock moved, which it does not here. The moment is one with
    // more than the pause between polls left on the poll: one ending within it is left to end (the renewal waits
    // for it rather than cost a new handshake), which on a stopped clock would be never.
    await settle(nodes);
    const parkedLong = (): boolean => (node.agent.pollEndsAt ?? -Infinity) - t.clock.now() > 1_000;
    for (let steps = 0; !parkedLong(); steps++) {
      expect(steps, 'a poll parked for more than a second within two heartbeats').toBeLessThan(60);
      await run(nodes, 1_000);
    }
    const before = node.certs.length;
    await node.agent.renewNow('renew-now');
    expect(node.certs.length).toBe(before + 1);
    expect(sockets.get(node.id)?.size ?? 0).toBeLessThanOrEqual(1);
  });
});
