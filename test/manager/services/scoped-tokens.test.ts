/**
 * Scoped join tokens (issue 17): a lifetime on the injected clock, a use
 * count taken in the join's own transaction (N+5 racing joins, on two
 * managers sharing a real etcd, give exactly N certificates), labels that
 * win over the node's own, and an audit trail that names the token by ID.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/logger.js';
import { systemRandom } from '../../../src/core/random.js';
import { memoryAuditSink } from '../../../src/manager/services/audit.js';
import type { Caller } from '../../../src/manager/state/caller.js';
import { buildServices } from '../../../src/manager/manager.js';
import { scopedTokenId } from '../../../src/manager/services/scoped-tokens.js';
import { EtcdStore } from '../../../src/store/etcd-store.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { parseJoinToken } from '../../../src/token/join-token.js';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.js';
import { HOUR, foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';
import { slow } from '../../helpers/slowdown.js';

const codeOf = (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (e: { code?: string }) => e.code,
  );

const join = (cluster: TestCluster, token: string, extra: { labels?: Record<string, string>; hostname?: string } = {}) =>
  cluster.caServer.join({ token, csr: freshCsr().csr, ...extra }, '10.1.1.1');

describe('scoped join tokens', () => {
  // A cluster of its own for each test, so each passes alone and in any order.
  let t: TestCluster;
  let admin: Caller;
  beforeEach(async () => {
    t = await foundTestCluster();
    admin = await t.authoriser.authorize(t.managerCert, ['manager', 'admin']);
  });
  afterEach(async () => {
    await t.cleanup();
  });

  it('are SWMTKN tokens of this root with their own secret, shown once; ls never shows the secret', async () => {
    const created = await t.scopedTokens.create({ role: 'worker', uses: 3, ttl: '1h', labels: { zone: 'a' } }, admin);
    const classic = parseJoinToken(t.settings.joinTokens().worker);
    const scoped = parseJoinToken(created.token);
    expect(scoped.digest.equals(classic.digest)).toBe(true);
    expect(scoped.secret.equals(classic.secret)).toBe(false);
    expect(created).toMatchObject({
      id: scopedTokenId(created.token),
      role: 'worker',
      uses: 3,
      usesLeft: 3,
      labels: { zone: 'a' },
      status: 'active',
      createdBy: t.managerId,
    });
    const listed = await t.scopedTokens.list();
    expect(JSON.stringify(listed)).not.toContain(created.token);
    expect(JSON.stringify(listed)).not.toContain(created.token.split('-').at(-1));
    // The store holds a hash, never the token.
    const stored = (await t.store.get(KEYS.scopedTokens.ref(created.id)))!.value;
    expect(JSON.stringify(stored)).not.toContain(created.token.split('-').at(-1));
  });

  it("give the joined node the token's labels, which win over the node's own; node inspect shows the token", async () => {
    const created = await t.scopedTokens.create({ role: 'worker', labels: { zone: 'eu-1', tier: 'gpu' } }, admin);
    const joined = await join(t, created.token, { labels: { zone: 'spoofed', rack: '7' }, hostname: 'gpu-1' });
    const node = await t.inventory.getNode(joined.nodeId);
    expect(node.labels).toEqual({ zone: 'eu-1', tier: 'gpu', rack: '7' });
    expect(node.joinToken).toBe(created.id);
    expect(joined.role).toBe('worker');
  });

  it('are refused after their TTL on the injected clock, like a rotated token, and listed as expired', async () => {
    const created = await t.scopedTokens.create({ role: 'worker', ttl: '30m' }, admin);
    await join(t, created.token);
    t.clock.advance(29 * 60_000);
    await join(t, created.token);
    t.clock.advance(60_000);
    expect(await codeOf(join(t, created.token))).toBe('TOKEN_REJECTED');
    expect(await codeOf(t.caServer.preflight(created.token, '10.1.1.2'))).toBe('TOKEN_REJECTED');
    expect((await t.scopedTokens.list()).tokens.find((x) => x.id === created.id)?.status).toBe('expired');
  });

  it('are refused once used up, and after rm; rm of an unknown ID is TOKEN_NOT_FOUND', async () => {
    const once = await t.scopedTokens.create({ role: 'worker', uses: 1 }, admin);
    await join(t, once.token);
    expect(await codeOf(join(t, once.token))).toBe('TOKEN_REJECTED');
    expect((await t.scopedTokens.list()).tokens.find((x) => x.id === once.id)).toMatchObject({ status: 'used', usesLeft: 0 });
    const removed = await t.scopedTokens.create({ role: 'worker' }, admin);
    await t.scopedTokens.remove(removed.id, admin);
    expect(await codeOf(join(t, removed.token))).toBe('TOKEN_REJECTED');
    expect(await codeOf(t.scopedTokens.remove('000000000000', admin))).toBe('TOKEN_NOT_FOUND');
    // The classic tokens are untouched by any of it.
    await join(t, t.settings.joinTokens().worker);
  });

  it('refuse a TTL under a minute and a bad duration', async () => {
    expect(await codeOf(t.scopedTokens.create({ role: 'worker', ttl: '30s' }, admin))).toBe('DURATION_INVALID');
    expect(await codeOf(t.scopedTokens.create({ role: 'worker', ttl: 'soon' }, admin))).toBe('DURATION_INVALID');
  });

  it('N+5 joins at once with an N-use token on one manager give exactly N certificates', async () => {
    const n = 4;
    const created = await t.scopedTokens.create({ role: 'worker', uses: n }, admin);
    const results = await Promise.allSettled(Array.from({ length: n + 5 }, () => join(t, created.token)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(n);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('TOKEN_REJECTED');
    const joined = (await t.inventory.listNodes()).nodes.filter((node) => node.joinToken === created.id);
    expect(joined).toHaveLength(n);
  });

  it('the audit trail names the token by ID and the admin by CN/OU, never the token itself', async () => {
    const once = await t.scopedTokens.create({ role: 'worker', uses: 1 }, admin);
    await join(t, once.token);
    expect(await codeOf(join(t, once.token))).toBe('TOKEN_REJECTED');
    const lines = t.auditLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const create = lines.find((l) => l.action === 'join-token.create');
    expect(create).toMatchObject({ actor: { cn: t.managerId, ou: 'swarm-manager' }, result: 'ok' });
    const joins = lines.filter((l) => l.action === 'node.join');
    expect(joins.some((l) => (l.actor as { token: string }).token.length === 12 && l.result === 'ok' && typeof l.serial === 'string')).toBe(true);
    expect(joins.some((l) => l.result === 'error' && l.code === 'TOKEN_REJECTED')).toBe(true);
    expect(t.auditLines.join('')).not.toMatch(/SWMTKN-1-/);
  });
});

describe('scoped join tokens on two managers sharing etcd', () => {
  let etcd: EtcdCluster;
  let a: TestCluster;
  let b: Awaited<ReturnType<typeof buildServices>>;
  let storeB: EtcdStore;
  beforeAll(async () => {
    etcd = await startEtcd();
    const connect = () => EtcdStore.connect({ connection: { endpoints: etcd.endpoints }, clusterId: 'scoped', logger: silentLogger });
    a = await foundTestCluster({ store: await connect(), shared: true, certExpiryMs: 24 * HOUR });
    storeB = await connect();
    b = await buildServices({
      store: storeB,
      dataKey: a.dataKey,
      nodeId: 'b',
      addr: '127.0.0.2:4377',
      clock: a.clock,
      random: systemRandom,
      logger: silentLogger,
      managerBundle: () => undefined,
      audit: memoryAuditSink(),
    });
  }, slow(30_000));
  afterAll(async () => {
    await b?.services.state.close();
    await storeB?.close();
    await a?.cleanup();
    await etcd?.stop();
  });

  it(
    'N+5 joins racing on both managers give exactly N certificates, and every manager refuses the token afterwards',
    async () => {
      const n = 5;
      const admin = await a.authoriser.authorize(a.managerCert, ['manager']);
      const created = await a.scopedTokens.create({ role: 'worker', uses: n, labels: { pool: 'ci' } }, admin);
      const attempts = Array.from({ length: n + 5 }, (_, i) =>
        (i % 2 === 0 ? a.services : b.services).caServer.join({ token: created.token, csr: freshCsr().csr }, `10.2.0.${i}`),
      );
      const results = await Promise.allSettled(attempts);
      const won = results.filter((r): r is PromiseFulfilledResult<Awaited<(typeof attempts)[number]>> => r.status === 'fulfilled');
      expect(won).toHaveLength(n);
      for (const r of results) if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('TOKEN_REJECTED');
      expect(new Set(won.map((r) => r.value.nodeId)).size).toBe(n);
      const stored = (await a.store.get(KEYS.scopedTokens.ref(created.id)))!.value;
      expect(stored.usesLeft).toBe(0);
      expect(await codeOf(b.services.caServer.join({ token: created.token, csr: freshCsr().csr }, '10.2.1.1'))).toBe('TOKEN_REJECTED');
      for (const r of won) expect((await b.services.inventory.getNode(r.value.nodeId)).labels).toEqual({ pool: 'ci' });
    },
    slow(60_000),
  );
});
