import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MusterError } from '../../../src/core/errors.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { parseJoinToken } from '../../../src/token/join-token.js';
import { codeOf } from '../../helpers/codes.js';
import { HOUR, foundTestCluster, freshCsr, heldFeed, memoryStore, type TestCluster } from '../../helpers/service.js';
import { storeToken } from '../../../src/manager/state/stored-tokens.js';

let t: TestCluster;
beforeEach(async () => {
  t = await foundTestCluster();
});
afterEach(async () => {
  await t.cleanup();
});

const subjectOf = (pem: string): string => new X509Certificate(pem).subject;

async function joinAs(cluster: TestCluster, role: 'worker' | 'manager', source = '10.0.0.1') {
  const tokens = cluster.settings.joinTokens();
  const response = await cluster.caServer.join({ token: tokens[role], csr: freshCsr().csr, hostname: `${role}-host` }, source);
  return { response, cert: new X509Certificate(response.certificate) };
}

describe('join', () => {
  it('the worker token yields a worker certificate and a stored node, committed with its certificate record', async () => {
    const { response } = await joinAs(t, 'worker');
    expect(response.role).toBe('worker');
    expect(subjectOf(response.certificate)).toBe(`O=${t.clusterId}\nOU=swarm-worker\nCN=${response.nodeId}`);
    const node = (await t.store.get(KEYS.nodes.ref(response.nodeId)))?.value;
    expect(node).toMatchObject({ role: 'worker', hostname: 'worker-host', removed: false, certSerial: new X509Certificate(response.certificate).serialNumber });
    expect((await t.store.get(KEYS.certificates.ref(node!.certSerial)))?.value).toMatchObject({ subject: response.nodeId, kind: 'join' });
    expect(response.rootCA).toBe(t.state.root.pem);
    expect(response.managers).toEqual(['127.0.0.1:4377']);
    expect(response.manager).toBeUndefined();
  });

  it('gives each node a fresh 25-character ID', async () => {
    const a = await joinAs(t, 'worker');
    const b = await joinAs(t, 'worker');
    expect(a.response.nodeId).toMatch(/^[0-9a-z]{25}$/);
    expect(a.response.nodeId).not.toBe(b.response.nodeId);
  });

  it('refuses the manager token on the embedded store, before the node makes a key (preflight)', async () => {
    const token = t.settings.joinTokens().manager;
    expect(await codeOf(t.caServer.preflight(token, 'a'))).toBe('EMBEDDED_STORE');
    expect(await codeOf(t.caServer.join({ token, csr: freshCsr().csr }, 'a'))).toBe('EMBEDDED_STORE');
    expect(new MusterError('EMBEDDED_STORE').hint).toMatch(/muster store migrate/);
    expect((await t.caServer.preflight(t.settings.joinTokens().worker, 'a')).role).toBe('worker');
  });

  it('on a shared store the manager token yields a manager certificate with the advertise host, the managers index and the bundle', async () => {
    const shared = await foundTestCluster({ shared: true });
    try {
      const response = await shared.caServer.join({ token: shared.settings.joinTokens().manager, csr: freshCsr().csr, managerAddr: '10.1.2.3:4377' }, 'a');
      expect(response.role).toBe('manager');
      expect(subjectOf(response.certificate)).toMatch(/OU=swarm-manager/);
      expect(new X509Certificate(response.certificate).subjectAltName).toContain('IP Address:10.1.2.3');
      expect(response.manager?.dataKey).toBe(shared.dataKey.toString('base64'));
      expect((await shared.store.get(KEYS.managers))?.value.ids).toEqual([shared.managerId, response.nodeId]);
    } finally {
      await shared.cleanup();
    }
  });

  it('refuses a rotated, a mistyped and a foreign token', async () => {
    const old = t.settings.joinTokens().worker;
    await t.settings.rotateToken('worker');
    expect(await codeOf(t.caServer.join({ token: old, csr: freshCsr().csr }, 'a'))).toBe('TOKEN_REJECTED');
    const current = t.settings.joinTokens().worker;
    const typo = current.slice(0, -1) + (current.endsWith('a') ? 'b' : 'a');
    expect(await codeOf(t.caServer.join({ token: typo, csr: freshCsr().csr }, 'b'))).toBe('TOKEN_REJECTED');
    const other = await foundTestCluster();
    try {
      expect(await codeOf(t.caServer.join({ token: other.settings.joinTokens().worker, csr: freshCsr().csr }, 'c'))).toBe('TOKEN_REJECTED');
    } finally {
      await other.cleanup();
    }
    expect(await codeOf(t.caServer.join({ token: 'invalidtoken', csr: freshCsr().csr }, 'd'))).toBe('TOKEN_INVALID');
  });

  it('checks a token against the store, not a stale cache: a token rotated by another manager is refused, its successor accepted', async () => {
    const store = heldFeed(await memoryStore());
    const m = await foundTestCluster({ store });
    try {
      const old = m.settings.joinTokens().worker;
      // Another manager rotates: the store changes, this manager's feed has not told it yet.
      const tokens = (await store.get(KEYS.tokens))!;
      const successor = old.replace(/.{25}$/, `${'0'.repeat(24)}1`);
      const rotated = { ...tokens.value, worker: storeToken(m.dataKey, 'worker', successor) };
      expect(
        await store.commit({ compares: [{ key: KEYS.tokens.key, version: tokens.version }], puts: [{ key: KEYS.tokens.key, value: rotated }], deletes: [] }),
      ).toBe(true);
      expect(m.settings.joinTokens().worker).toBe(old); // the cache is behind
      expect(await codeOf(m.caServer.join({ token: old, csr: freshCsr().csr }, 'e'))).toBe('TOKEN_REJECTED');
      await expect(m.caServer.join({ token: successor, csr: freshCsr().csr }, 'e')).resolves.toMatchObject({ role: 'worker' });
    } finally {
      await m.cleanup();
    }
  });

  it('rotation keeps the digest and changes the secret', async () => {
    const before = parseJoinToken(t.settings.joinTokens().manager);
    await t.settings.rotateToken('manager');
    const after = parseJoinToken(t.settings.joinTokens().manager);
    expect(after.digest.equals(before.digest)).toBe(true);
    expect(after.secret.equals(before.secret)).toBe(false);
  });

  it('rate-limits failed attempts per source address, but lets a valid token through', async () => {
    for (let i = 0; i < 10; i++) expect(await codeOf(t.caServer.join({ token: 'invalidtoken', csr: '' }, '192.0.2.9'))).toBe('TOKEN_INVALID');
    let caught: MusterError | undefined;
    try {
      await t.caServer.join({ token: `SWMTKN-1-${'0'.repeat(50)}-${'0'.repeat(25)}`, csr: freshCsr().csr }, '192.0.2.9');
    } catch (error) {
      caught = error as MusterError;
    }
    expect(caught?.code).toBe('RATE_LIMITED');
    expect(caught?.details?.retryAfterSeconds).toBe(60);
    // A neighbour behind the same address with the right token is not locked out.
    await expect(joinAs(t, 'worker', '192.0.2.9')).resolves.toBeDefined();
    t.clock.advance(60_000);
    expect(await codeOf(t.caServer.join({ token: 'invalidtoken', csr: '' }, '192.0.2.9'))).toBe('TOKEN_INVALID');
  });

  it('refuses a bad CSR after a good token without counting it as a guess', async () => {
    expect(await codeOf(t.caServer.join({ token: t.settings.joinTokens().worker, csr: 'junk' }, 's'))).toBe('CSR_NOT_PEM');
  });
});

describe('renew', () => {
  it('renewal after a promotion returns a manager certificate with the bundle; self said to renew first', async () => {
    const shared = await foundTestCluster({ shared: true });
    try {
      const worker = await joinAs(shared, 'worker');
      await shared.inventory.setRole(worker.response.nodeId, 'manager');
      const caller = await shared.authoriser.authorize(worker.cert, ['manager', 'worker']);
      expect(await shared.inventory.self(caller)).toMatchObject({ renewNow: true, reason: 'role-change' });
      const renewed = await shared.caServer.renew(caller, { csr: freshCsr().csr, managerAddr: '10.9.9.9:4377' });
      expect(renewed.role).toBe('manager');
      expect(renewed.manager).toBeDefined();
      const cert = new X509Certificate(renewed.certificate);
      expect(cert.subject).toMatch(/OU=swarm-manager/);
      expect(cert.subjectAltName).toContain('IP Address:10.9.9.9');
      expect((await shared.store.get(KEYS.nodes.ref(worker.response.nodeId)))?.value).toMatchObject({
        role: 'manager',
        certRole: 'manager',
        certSerial: cert.serialNumber,
        managerAddr: '10.9.9.9:4377',
      });
      const newCaller = await shared.authoriser.authorize(cert, ['manager', 'worker']);
      expect((await shared.inventory.self(newCaller)).renewNow).toBe(false);
      // A manager renewing as a manager is not sent the bundle again.
      expect((await shared.caServer.renew(newCaller, { csr: freshCsr().csr })).manager).toBeUndefined();
    } finally {
      await shared.cleanup();
    }
  });

  it('a shortened expiry makes outliving certificates renew now, and new ones obey it', async () => {
    const worker = await joinAs(t, 'worker');
    const caller = await t.authoriser.authorize(worker.cert, ['worker']);
    expect((await t.inventory.self(caller)).renewNow).toBe(false);
    await t.settings.updateCluster({ certExpiry: '1h' });
    expect(await t.inventory.self(caller)).toMatchObject({ renewNow: true, reason: 'cert-expiry', certExpiry: '1h' });
    const renewed = await t.caServer.renew(caller, { csr: freshCsr().csr });
    expect(Date.parse(renewed.notAfter)).toBeLessThanOrEqual(t.clock.now() + HOUR);
  });

  it('a change of expiry committed by another manager applies to the next issuance here', async () => {
    const cluster = (await t.store.get(KEYS.cluster))!;
    await t.store.commit({
      compares: [{ key: KEYS.cluster.key, version: cluster.version }],
      puts: [{ key: KEYS.cluster.key, value: { ...cluster.value, certExpiryMs: HOUR } }],
      deletes: [],
    });
    const { response } = await joinAs(t, 'worker');
    expect(Date.parse(response.notAfter)).toBeLessThanOrEqual(t.clock.now() + HOUR);
  });
});

describe('API users', () => {
  it('issues OU=swarm-admin certificates that pass admin authorisation', async () => {
    const user = await t.caServer.issueUser({ name: 'alice', csr: freshCsr().csr });
    const cert = new X509Certificate(user.certificate);
    expect(cert.subject).toBe(`O=${t.clusterId}\nOU=swarm-admin\nCN=alice`);
    expect((await t.authoriser.authorize(cert, ['manager', 'admin'])).role).toBe('admin');
    expect(await codeOf(t.authoriser.authorize(cert, ['manager', 'worker']))).toBe('AUTH_FORBIDDEN');
    expect(await codeOf(t.caServer.issueUser({ name: '0123456789abcdefghijklmno', csr: freshCsr().csr }))).toBe('BODY_INVALID');
    // etcd would read a certificate named root as its root user (a managed store keys access on the CN).
    expect(await codeOf(t.caServer.issueUser({ name: 'root', csr: freshCsr().csr }))).toBe('BODY_INVALID');
  });

  it('revokes a user: CERT_REVOKED from then on, other users untouched', async () => {
    const alice = new X509Certificate((await t.caServer.issueUser({ name: 'alice', csr: freshCsr().csr })).certificate);
    const bob = new X509Certificate((await t.caServer.issueUser({ name: 'bob', csr: freshCsr().csr })).certificate);
    expect(await t.caServer.revokeUser('alice')).toEqual({ name: 'alice', revoked: 1, serials: [alice.serialNumber] });
    expect(await codeOf(t.authoriser.authorize(alice, ['manager', 'admin']))).toBe('CERT_REVOKED');
    expect((await t.authoriser.authorize(bob, ['manager', 'admin'])).nodeId).toBe('bob');
    expect((await t.caServer.revokeUser('alice')).revoked).toBe(0);
    expect(await codeOf(t.caServer.revokeUser('nobody'))).toBe('USER_NOT_FOUND');
  });
});

describe('logs', () => {
  it('never carry a join token', async () => {
    await joinAs(t, 'worker');
    await codeOf(t.caServer.join({ token: `SWMTKN-1-${'a'.repeat(50)}-${'b'.repeat(25)}`, csr: freshCsr().csr }, 'x'));
    await t.settings.rotateToken('worker');
    const text = JSON.stringify(t.logger.records);
    expect(text).not.toMatch(/SWMTKN/);
  });
});
