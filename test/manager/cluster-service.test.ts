import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { systemRandom } from '../../src/core/random.js';
import { ClusterService, NODE_DOWN_AFTER_MS } from '../../src/manager/cluster-service.js';
import { createRootCa, loadSigningCa } from '../../src/pki/ca.js';
import { parseCsr } from '../../src/pki/csr.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { parseJoinToken } from '../../src/token/join-token.js';
import { HOUR, foundTestCluster, freshCsr } from '../helpers/service.js';

let t: Awaited<ReturnType<typeof foundTestCluster>>;
beforeEach(async () => {
  t = await foundTestCluster();
});
afterEach(async () => {
  await t.cleanup();
});

const subjectOf = (pem: string): string => new X509Certificate(pem).subject;
const codeOf = async (promise: Promise<unknown>): Promise<string | undefined> => {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (error instanceof MusterError) return error.code;
    throw error;
  }
};

async function joinAs(role: 'worker' | 'manager', source = '10.0.0.1') {
  const tokens = t.service.joinTokens();
  const response = await t.service.join({ token: tokens[role], csr: freshCsr().csr, hostname: `${role}-host` }, source);
  return { response, cert: new X509Certificate(response.certificate) };
}

describe('join', () => {
  it('the worker token yields a worker certificate and a stored node, committed first', async () => {
    const { response } = await joinAs('worker');
    expect(response.role).toBe('worker');
    expect(subjectOf(response.certificate)).toBe(`O=${t.service.clusterId}\nOU=swarm-worker\nCN=${response.nodeId}`);
    const node = await t.store.getNode(response.nodeId);
    expect(node).toMatchObject({ role: 'worker', hostname: 'worker-host', removed: false, certSerial: new X509Certificate(response.certificate).serialNumber });
    expect(await t.store.getCertificate(node!.certSerial)).toMatchObject({ subject: response.nodeId, kind: 'join' });
    expect(response.rootCA).toBe(t.service.rootPem);
  });

  it('the manager token yields a manager certificate', async () => {
    const { response } = await joinAs('manager');
    expect(response.role).toBe('manager');
    expect(subjectOf(response.certificate)).toMatch(/OU=swarm-manager/);
  });

  it('gives each node a fresh 25-character ID', async () => {
    const a = await joinAs('worker');
    const b = await joinAs('worker');
    expect(a.response.nodeId).toMatch(/^[0-9a-z]{25}$/);
    expect(a.response.nodeId).not.toBe(b.response.nodeId);
  });

  it('refuses a rotated, a mistyped and a foreign token', async () => {
    const old = t.service.joinTokens().worker;
    await t.service.rotateToken('worker');
    expect(await codeOf(t.service.join({ token: old, csr: freshCsr().csr }, 'a'))).toBe('TOKEN_REJECTED');
    const current = t.service.joinTokens().worker;
    const typo = current.slice(0, -1) + (current.endsWith('a') ? 'b' : 'a');
    expect(await codeOf(t.service.join({ token: typo, csr: freshCsr().csr }, 'b'))).toBe('TOKEN_REJECTED');
    const other = await foundTestCluster();
    try {
      expect(await codeOf(t.service.join({ token: other.service.joinTokens().worker, csr: freshCsr().csr }, 'c'))).toBe('TOKEN_REJECTED');
    } finally {
      await other.cleanup();
    }
    expect(await codeOf(t.service.join({ token: 'invalidtoken', csr: freshCsr().csr }, 'd'))).toBe('TOKEN_INVALID');
  });

  it('rotation keeps the digest and changes the secret', async () => {
    const before = parseJoinToken(t.service.joinTokens().manager);
    await t.service.rotateToken('manager');
    const after = parseJoinToken(t.service.joinTokens().manager);
    expect(after.digest.equals(before.digest)).toBe(true);
    expect(after.secret.equals(before.secret)).toBe(false);
  });

  it('rate-limits failed attempts per source address, then lets it try again', async () => {
    for (let i = 0; i < 10; i++) expect(await codeOf(t.service.join({ token: 'invalidtoken', csr: '' }, '192.0.2.9'))).toBe('TOKEN_INVALID');
    let caught: MusterError | undefined;
    try {
      await t.service.join({ token: t.service.joinTokens().worker, csr: freshCsr().csr }, '192.0.2.9');
    } catch (error) {
      caught = error as MusterError;
    }
    expect(caught?.code).toBe('RATE_LIMITED');
    expect(caught?.details?.retryAfterSeconds).toBe(60);
    // another address is not affected
    await expect(joinAs('worker', '192.0.2.10')).resolves.toBeDefined();
    t.clock.advance(60_000);
    await expect(joinAs('worker', '192.0.2.9')).resolves.toBeDefined();
  });

  it('refuses a bad CSR after a good token without counting it as a guess', async () => {
    expect(await codeOf(t.service.join({ token: t.service.joinTokens().worker, csr: 'junk' }, 's'))).toBe('CSR_NOT_PEM');
  });
});

describe('authorize', () => {
  it('lets managers and admins reach admin routes, not workers', async () => {
    const worker = await joinAs('worker');
    expect((await t.service.authorize(t.managerCert, ['manager', 'admin'])).role).toBe('manager');
    expect(await codeOf(t.service.authorize(worker.cert, ['manager', 'admin']))).toBe('AUTH_FORBIDDEN');
    expect((await t.service.authorize(worker.cert, ['manager', 'worker'])).nodeId).toBe(worker.response.nodeId);
  });

  it('answers 401 for no certificate, a foreign root and an expired certificate', async () => {
    expect(await codeOf(t.service.authorize(undefined, ['manager']))).toBe('AUTH_REQUIRED');
    const foreign = new X509Certificate(createRootCa({ clusterId: t.service.clusterId, clock: t.clock, random: systemRandom }).certPem);
    expect(await codeOf(t.service.authorize(foreign, ['manager']))).toBe('CERT_UNTRUSTED');
    const worker = await joinAs('worker');
    t.clock.advance(91 * 24 * HOUR);
    expect(await codeOf(t.service.authorize(worker.cert, ['worker']))).toBe('CERT_EXPIRED');
    expect(new MusterError('CERT_EXPIRED').statusCode).toBe(401);
  });

  it('refuses a removed node on every route', async () => {
    const worker = await joinAs('worker');
    t.clock.advance(NODE_DOWN_AFTER_MS + 1);
    await t.service.removeNode(worker.response.nodeId, { force: false });
    for (const allowed of [['worker'], ['manager', 'worker'], ['manager', 'admin']] as const) {
      expect(await codeOf(t.service.authorize(worker.cert, allowed))).toBe('NODE_REMOVED');
    }
  });

  it('stops treating a demoted manager as a manager before it renews', async () => {
    const second = await joinAs('manager');
    await t.service.setRole(second.response.nodeId, 'worker');
    expect(await codeOf(t.service.authorize(second.cert, ['manager', 'admin']))).toBe('AUTH_FORBIDDEN');
  });
});

describe('renew and self', () => {
  it('renewal after a promotion returns a manager certificate, and self says to renew first', async () => {
    const worker = await joinAs('worker');
    await t.service.setRole(worker.response.nodeId, 'manager');
    const caller = await t.service.authorize(worker.cert, ['manager', 'worker']);
    const advice = await t.service.self(caller);
    expect(advice).toMatchObject({ renewNow: true, reason: 'role-change' });
    const renewed = await t.service.renew(caller, freshCsr().csr);
    expect(renewed.role).toBe('manager');
    expect(subjectOf(renewed.certificate)).toMatch(/OU=swarm-manager/);
    const node = await t.store.getNode(worker.response.nodeId);
    expect(node).toMatchObject({ role: 'manager', certRole: 'manager', certSerial: new X509Certificate(renewed.certificate).serialNumber });
    const newCaller = await t.service.authorize(new X509Certificate(renewed.certificate), ['manager', 'worker']);
    expect((await t.service.self(newCaller)).renewNow).toBe(false);
  });

  it('a demoted manager renews into a worker certificate', async () => {
    const second = await joinAs('manager');
    await t.service.setRole(second.response.nodeId, 'worker');
    const caller = await t.service.authorize(second.cert, ['manager', 'worker']);
    expect((await t.service.renew(caller, freshCsr().csr)).role).toBe('worker');
  });

  it('a shortened expiry makes outliving certificates renew now, and new ones obey it', async () => {
    const worker = await joinAs('worker');
    const caller = await t.service.authorize(worker.cert, ['worker']);
    expect((await t.service.self(caller)).renewNow).toBe(false);
    await t.service.updateCluster({ certExpiry: '1h' });
    expect(await t.service.self(caller)).toMatchObject({ renewNow: true, reason: 'cert-expiry', certExpiry: '1h' });
    const renewed = await t.service.renew(caller, freshCsr().csr);
    expect(Date.parse(renewed.notAfter)).toBeLessThanOrEqual(t.clock.now() + HOUR);
  });

  it('refuses an expiry below an hour and malformed ones', async () => {
    expect(await codeOf(t.service.updateCluster({ certExpiry: '59m' }))).toBe('CERT_EXPIRY_TOO_SHORT');
    expect(await codeOf(t.service.updateCluster({ certExpiry: 'soon' }))).toBe('DURATION_INVALID');
    expect(t.service.clusterView(false).certExpiry).toBe('2160h');
  });
});

describe('node lifecycle', () => {
  it('needs force to remove a node that is still active', async () => {
    const worker = await joinAs('worker');
    expect(await codeOf(t.service.removeNode(worker.response.nodeId, { force: false }))).toBe('NODE_ACTIVE');
    expect((await t.service.removeNode(worker.response.nodeId, { force: true })).status).toBe('removed');
  });

  it('never demotes or removes the last manager', async () => {
    expect(await codeOf(t.service.setRole(t.managerId, 'worker'))).toBe('LAST_MANAGER');
    expect(await codeOf(t.service.removeNode(t.managerId, { force: true }))).toBe('LAST_MANAGER');
    const second = await joinAs('manager');
    await expect(t.service.setRole(t.managerId, 'worker')).resolves.toMatchObject({ role: 'worker' });
    expect(await codeOf(t.service.setRole(second.response.nodeId, 'worker'))).toBe('LAST_MANAGER');
  });

  it('lists nodes oldest first with status, and 404s an unknown ID', async () => {
    t.clock.advance(1000);
    await joinAs('worker');
    const nodes = await t.service.listNodes();
    expect(nodes.map((n) => n.role)).toEqual(['manager', 'worker']);
    expect(nodes.every((n) => n.status === 'ready')).toBe(true);
    t.clock.advance(NODE_DOWN_AFTER_MS + 1);
    expect((await t.service.listNodes()).every((n) => n.status === 'down')).toBe(true);
    expect(await codeOf(t.service.getNode('0000000000000000000000000'))).toBe('NODE_NOT_FOUND');
    expect(await codeOf(t.service.getNode('../etc'))).toBe('NODE_NOT_FOUND');
  });

  it('keeps cluster ID, root, tokens and nodes across a reopen', async () => {
    const worker = await joinAs('worker');
    const tokens = t.service.joinTokens();
    const reopened = await ClusterService.open({ store: t.store, clock: t.clock, random: systemRandom, logger: t.logger, advertiseHost: '127.0.0.1' });
    expect(reopened.clusterId).toBe(t.service.clusterId);
    expect(reopened.rootPem).toBe(t.service.rootPem);
    expect(reopened.joinTokens()).toEqual(tokens);
    expect((await reopened.getNode(worker.response.nodeId)).role).toBe('worker');
  });
});

describe('API users', () => {
  it('issues OU=swarm-admin certificates that pass admin authorisation', async () => {
    const user = await t.service.issueUser('alice', freshCsr().csr);
    const cert = new X509Certificate(user.certificate);
    expect(cert.subject).toBe(`O=${t.service.clusterId}\nOU=swarm-admin\nCN=alice`);
    expect((await t.service.authorize(cert, ['manager', 'admin'])).role).toBe('admin');
    expect(await codeOf(t.service.authorize(cert, ['manager', 'worker']))).toBe('AUTH_FORBIDDEN');
  });
});

describe('revoking API users', () => {
  it('refuses a revoked user with CERT_REVOKED and leaves other users alone', async () => {
    const alice = new X509Certificate((await t.service.issueUser('alice', freshCsr().csr)).certificate);
    const bob = new X509Certificate((await t.service.issueUser('bob', freshCsr().csr)).certificate);
    const result = await t.service.revokeUser('alice');
    expect(result).toEqual({ name: 'alice', revoked: 1, serials: [alice.serialNumber] });
    expect(await codeOf(t.service.authorize(alice, ['manager', 'admin']))).toBe('CERT_REVOKED');
    expect(new MusterError('CERT_REVOKED').statusCode).toBe(403);
    expect((await t.service.authorize(bob, ['manager', 'admin'])).nodeId).toBe('bob');
    expect((await t.service.revokeUser('alice')).revoked).toBe(0);
    expect(await codeOf(t.service.revokeUser('nobody'))).toBe('USER_NOT_FOUND');
  });

  it('refuses an API-user certificate signed by the root but never recorded as issued', async () => {
    const ca = await t.store.getCa();
    const forged = issueCertificate({
      ca: loadSigningCa({ certPem: ca!.rootPem, keyPem: ca!.keyPem! }),
      csr: parseCsr(freshCsr().csr),
      role: 'admin',
      commonName: 'mallory',
      clusterId: t.service.clusterId,
      validityMs: HOUR,
      clock: t.clock,
      random: systemRandom,
    });
    expect(await codeOf(t.service.authorize(new X509Certificate(forged.certPem), ['manager', 'admin']))).toBe('AUTH_FORBIDDEN');
  });
});

describe('logs', () => {
  it('never carry a join token', async () => {
    await joinAs('worker');
    await codeOf(t.service.join({ token: 'SWMTKN-1-' + 'a'.repeat(50) + '-' + 'b'.repeat(25), csr: freshCsr().csr }, 'x'));
    await t.service.rotateToken('worker');
    const text = JSON.stringify(t.logger.records);
    const tokens = t.service.joinTokens();
    expect(text).not.toContain(tokens.worker);
    expect(text).not.toContain(tokens.manager);
    expect(text).not.toMatch(/SWMTKN/);
  });
});
