import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Janitor } from '../../../src/manager/services/janitor.js';
import { KEYS, type ClusterStore, type Txn } from '../../../src/store/cluster-store.js';
import { nodeIds, nodeRecord, seedNodes } from '../../helpers/node-records.js';
import { HOUR, foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';

const MINUTE = 60_000;
const SWEEP_MS = 30 * MINUTE;
/** The renewal grace these tests run with: a removed node's record outlives its certificate by this. */
const GRACE_MS = 20 * MINUTE;

let t: TestCluster;
let janitor: Janitor;
/** Serials of the certificates the scenario issued, by name. */
let serial: Record<'manager' | 'a1' | 'a2' | 'b1' | 'alice' | 'bob', string>;
let nodeB: string;
let b1Pem: string;

/**
 * A cluster with 2h node certificates: worker A joined and renewed at once
 * (a1 superseded by a2), worker B joined and was removed, API user alice
 * has a 1h certificate and bob a 3h one that was revoked. Then a minute
 * passes, so the sweeps every 30 minutes fall between expiries.
 */
beforeEach(async () => {
  t = await foundTestCluster({ certExpiryMs: 2 * HOUR });
  const token = t.settings.joinTokens().worker;
  const a = await t.caServer.join({ token, csr: freshCsr().csr, hostname: 'a' }, '10.0.0.1');
  const b = await t.caServer.join({ token, csr: freshCsr().csr, hostname: 'b' }, '10.0.0.2');
  const caller = await t.authoriser.authorize(new X509Certificate(a.certificate), ['worker']);
  const a2 = await t.caServer.renew(caller, { csr: freshCsr().csr });
  await t.inventory.removeNode(b.nodeId, { force: true });
  const alice = await t.caServer.issueUser({ name: 'alice', csr: freshCsr().csr, expiry: '1h' });
  const bob = await t.caServer.issueUser({ name: 'bob', csr: freshCsr().csr, expiry: '3h' });
  await t.caServer.revokeUser('bob');
  const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber;
  serial = {
    manager: t.managerCert.serialNumber,
    a1: serialOf(a.certificate),
    a2: serialOf(a2.certificate),
    b1: serialOf(b.certificate),
    alice: serialOf(alice.certificate),
    bob: serialOf(bob.certificate),
  };
  nodeB = b.nodeId;
  b1Pem = b.certificate;
  t.clock.advance(MINUTE);
  janitor = new Janitor({ store: t.store, membership: t.membership, clock: t.clock, logger: t.logger, everyMs: SWEEP_MS, renewGraceMs: () => GRACE_MS });
});

afterEach(async () => {
  await janitor.stop();
  await t.cleanup();
});

/** The certificate records still in the store, by scenario name. */
async function certificatesLeft(): Promise<string[]> {
  const held = new Set((await t.store.list(KEYS.certificates)).map((e) => e.id));
  return Object.entries(serial)
    .filter(([, s]) => held.has(s))
    .map(([name]) => name)
    .sort();
}

/** Lets the clock reach the next sweep and waits for it to finish. */
async function nextSweep(): Promise<void> {
  t.clock.advance(SWEEP_MS);
  await janitor.idle();
}

const sweepLogs = () => t.logger.records.filter((r) => r.message === 'swept expired records from the store').map((r) => r.fields);

describe('the janitor', () => {
  it('purges a removed node once its certificate expired and the renewal grace passed, and prunes expired superseded and API-user certificates; valid ones stay', async () => {
    janitor.start();
    janitor.start(); // idempotent: one timer
    await nextSweep(); // 31 minutes: nothing has expired
    expect(await certificatesLeft()).toEqual(['a1', 'a2', 'alice', 'b1', 'bob', 'manager']);
    expect(sweepLogs()).toEqual([]);

    await nextSweep(); // 61 minutes: alice's 1h certificate expired; a1 is superseded but still valid
    expect(await certificatesLeft()).toEqual(['a1', 'a2', 'b1', 'bob', 'manager']);
    expect(await t.store.get(KEYS.nodes.ref(nodeB))).toBeDefined();

    await nextSweep(); // 91 minutes: nothing new
    await nextSweep(); // 121 minutes: the 2h certificates expired
    // a2 and the manager's are their live nodes' current certificates (renewable within the grace); bob's revoked one is valid still.
    expect(await certificatesLeft()).toEqual(['a2', 'bob', 'manager']);
    // B's record stays through the grace: its daemon coming back now hears NODE_REMOVED, not "names no node".
    expect(await t.store.get(KEYS.nodes.ref(nodeB))).toBeDefined();
    await expect(t.authoriser.authorize(new X509Certificate(b1Pem), ['worker'], { expiredWithinGrace: true })).rejects.toMatchObject({ code: 'NODE_REMOVED' });

    await nextSweep(); // 151 minutes: the grace after B's certificate has passed
    expect(await t.store.get(KEYS.nodes.ref(nodeB))).toBeUndefined();
    expect((await t.inventory.listNodes({ all: true })).nodes.map((n) => n.hostname).sort()).toEqual(['a', 'manager-1']);
    expect(sweepLogs()).toEqual([
      { nodes: 0, certificates: 1, tokens: 0, revoked: 0 },
      { nodes: 0, certificates: 2, tokens: 0, revoked: 0 },
      { nodes: 1, certificates: 0, tokens: 0, revoked: 0 },
    ]);

    await nextSweep(); // 181 minutes: bob's expired
    expect(await certificatesLeft()).toEqual(['a2', 'manager']);
  });

  it('sweeps only on the leader', async () => {
    await t.store.register({ nodeId: 'another-manager', addr: '10.0.0.9:4377', startedAt: 1 }); // the embedded store holds one registration: it leads
    janitor.start();
    for (let i = 0; i < 4; i++) await nextSweep(); // 121 minutes: everything but bob's has expired
    expect(await certificatesLeft()).toEqual(['a1', 'a2', 'alice', 'b1', 'bob', 'manager']);
    expect(await t.store.get(KEYS.nodes.ref(nodeB))).toBeDefined();
    await t.membership.register(); // this manager leads again
    await nextSweep(); // 151 minutes
    expect(await certificatesLeft()).toEqual(['a2', 'bob', 'manager']);
    expect(await t.store.get(KEYS.nodes.ref(nodeB))).toBeUndefined();
  });

  it('stops: no sweep after stop(), which is idempotent', async () => {
    janitor.start();
    await janitor.stop();
    await janitor.stop();
    janitor.start(); // a stopped janitor stays stopped
    t.clock.advance(3 * HOUR);
    await janitor.idle();
    expect(await certificatesLeft()).toHaveLength(6);
  });

  it('keeps a record that changed after the sweep read it, and deletes the rest', async () => {
    t.clock.advance(2 * HOUR + GRACE_MS);
    let raced = false;
    // Another manager rewrites a1's record just before the janitor's first deletion of several commits.
    const racing = new Proxy(t.store, {
      get(target, name, receiver) {
        if (name !== 'commit') {
          const value: unknown = Reflect.get(target, name, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        }
        return async (txn: Txn): Promise<boolean> => {
          if (!raced && txn.deletes.length > 1) {
            raced = true;
            const a1 = (await target.get(KEYS.certificates.ref(serial.a1)))!;
            await target.commit({
              compares: [],
              puts: [{ key: KEYS.certificates.ref(serial.a1).key, value: { ...a1.value, revokedAt: t.clock.now() } }],
              deletes: [],
            });
          }
          return target.commit(txn);
        };
      },
    }) as ClusterStore;
    const swept = await new Janitor({ store: racing, membership: t.membership, clock: t.clock, logger: t.logger, renewGraceMs: () => GRACE_MS }).sweep();
    expect(raced).toBe(true);
    expect(swept).toEqual({ nodes: 1, certificates: 2, tokens: 0, revoked: 0 }); // b1 and alice; a1 changed meanwhile
    expect(await certificatesLeft()).toEqual(['a1', 'a2', 'bob', 'manager']);
    expect(await janitor.sweep()).toEqual({ nodes: 0, certificates: 1, tokens: 0, revoked: 0 }); // the next sweep takes it
  });

  it('pages through thousands of records in chunks of 500 and deletes them 100 to a transaction', async () => {
    const removed = nodeIds('r', 1_250).map((id) => nodeRecord(id, { removed: true, certNotAfter: t.clock.now() - GRACE_MS - 1 }));
    await seedNodes(t.store, removed, { certificates: true });
    const list = vi.spyOn(t.store, 'list');
    const commit = vi.spyOn(t.store, 'commit');
    expect(await janitor.sweep()).toEqual({ nodes: 1_250, certificates: 1_250, tokens: 0, revoked: 0 });
    expect(list.mock.calls.every(([, page]) => page?.limit === 500)).toBe(true);
    const deletes = commit.mock.calls.map(([txn]) => txn.deletes.length);
    expect(Math.max(...deletes)).toBe(100);
    expect(deletes.reduce((sum, n) => sum + n, 0)).toBe(2_500);
    expect(await certificatesLeft()).toEqual(['a1', 'a2', 'alice', 'b1', 'bob', 'manager']);
  });
});
