import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { systemRandom } from '../../src/core/random.js';
import { NODE_DOWN_AFTER_MS } from '../../src/manager/inventory.js';
import { SEAL_CONTEXT } from '../../src/manager/signer.js';
import { createRootCa, loadSigningCa } from '../../src/pki/ca.js';
import { parseCsr } from '../../src/pki/csr.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { unseal } from '../../src/pki/seal.js';
import { KEYS } from '../../src/store/cluster-store.js';
import { codeOf } from '../helpers/codes.js';
import { HOUR, foundTestCluster, freshCsr, type TestCluster } from '../helpers/service.js';

let t: TestCluster;
beforeEach(async () => {
  t = await foundTestCluster({ shared: true });
});
afterEach(async () => {
  await t.cleanup();
});

async function joinAs(role: 'worker' | 'manager') {
  const response = await t.caServer.join({ token: t.settings.joinTokens()[role], csr: freshCsr().csr }, '10.0.0.1');
  return { response, cert: new X509Certificate(response.certificate) };
}

describe('authorize', () => {
  it('lets managers and admins reach admin routes, not workers', async () => {
    const worker = await joinAs('worker');
    expect((await t.authoriser.authorize(t.managerCert, ['manager', 'admin'])).role).toBe('manager');
    expect(await codeOf(t.authoriser.authorize(worker.cert, ['manager', 'admin']))).toBe('AUTH_FORBIDDEN');
    expect((await t.authoriser.authorize(worker.cert, ['manager', 'worker'])).nodeId).toBe(worker.response.nodeId);
  });

  it('answers 401 for no certificate, a foreign root and an expired certificate', async () => {
    expect(await codeOf(t.authoriser.authorize(undefined, ['manager']))).toBe('AUTH_REQUIRED');
    const foreign = new X509Certificate(createRootCa({ clusterId: t.clusterId, clock: t.clock, random: systemRandom }).certPem);
    expect(await codeOf(t.authoriser.authorize(foreign, ['manager']))).toBe('CERT_UNTRUSTED');
    const worker = await joinAs('worker');
    t.clock.advance(91 * 24 * HOUR);
    expect(await codeOf(t.authoriser.authorize(worker.cert, ['worker']))).toBe('CERT_EXPIRED');
    expect(new MusterError('CERT_EXPIRED').statusCode).toBe(401);
  });

  it('refuses a removed node on every route', async () => {
    const worker = await joinAs('worker');
    t.clock.advance(NODE_DOWN_AFTER_MS + 1);
    await t.inventory.removeNode(worker.response.nodeId, { force: false });
    for (const allowed of [['worker'], ['manager', 'worker'], ['manager', 'admin']] as const) {
      expect(await codeOf(t.authoriser.authorize(worker.cert, allowed))).toBe('NODE_REMOVED');
    }
  });

  it('stops treating a demoted manager as a manager before it renews', async () => {
    const second = await joinAs('manager');
    await t.inventory.setRole(second.response.nodeId, 'worker');
    expect(await codeOf(t.authoriser.authorize(second.cert, ['manager', 'admin']))).toBe('AUTH_FORBIDDEN');
  });

  it('refuses an API-user certificate signed by the root but never recorded as issued', async () => {
    const ca = (await t.store.get(KEYS.ca))!.value;
    const forged = issueCertificate({
      ca: loadSigningCa({ certPem: ca.rootPem, keyPem: unseal(t.dataKey, ca.key!, SEAL_CONTEXT.caKey).toString('utf8') }),
      csr: parseCsr(freshCsr().csr),
      role: 'admin',
      commonName: 'mallory',
      clusterId: t.clusterId,
      validityMs: HOUR,
      clock: t.clock,
      random: systemRandom,
    });
    expect(await codeOf(t.authoriser.authorize(new X509Certificate(forged.certPem), ['manager', 'admin']))).toBe('AUTH_FORBIDDEN');
  });
});
