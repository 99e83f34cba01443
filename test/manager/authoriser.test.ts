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

  it('refuses a service certificate on every route (403), whichever node holds it', async () => {
    const worker = await joinAs('worker');
    const manager = await joinAs('manager');
    for (const holder of [worker, manager]) {
      const caller = await t.authoriser.authorize(holder.cert, ['manager', 'worker']);
      const issued = await t.caServer.issueService(caller, { name: 'dockerd', csr: freshCsr().csr, sans: [], client: true });
      const service = new X509Certificate(issued.certificate);
      expect(service.subject).toContain('OU=muster-service');
      for (const allowed of [['manager', 'admin'], ['manager', 'worker'], ['admin']] as const) {
        expect(await codeOf(t.authoriser.authorize(service, allowed))).toBe('AUTH_FORBIDDEN');
      }
    }
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

  /** A certificate signed with the cluster's own root key, but not by a manager: nothing in the store records it. */
  async function forge(role: 'worker' | 'manager' | 'admin', commonName: string): Promise<X509Certificate> {
    const ca = (await t.store.get(KEYS.ca))!.value;
    const forged = issueCertificate({
      ca: loadSigningCa({ certPem: ca.rootPem, keyPem: unseal(t.dataKey, ca.key!, SEAL_CONTEXT.caKey).toString('utf8') }),
      csr: parseCsr(freshCsr().csr),
      role,
      commonName,
      clusterId: t.clusterId,
      validityMs: HOUR,
      clock: t.clock,
      random: systemRandom,
    });
    return new X509Certificate(forged.certPem);
  }

  it('refuses an API-user certificate signed by the root but never recorded as issued', async () => {
    expect(await codeOf(t.authoriser.authorize(await forge('admin', 'mallory'), ['manager', 'admin']))).toBe('AUTH_FORBIDDEN');
  });

  it('refuses a node certificate signed by the root but never issued by a manager, for a live node and its role', async () => {
    const worker = await joinAs('worker');
    const forgedWorker = await forge('worker', worker.response.nodeId);
    expect(await codeOf(t.authoriser.authorize(forgedWorker, ['manager', 'worker']))).toBe('CERT_UNTRUSTED');
    expect(await codeOf(t.authoriser.authorize(forgedWorker, ['manager', 'worker'], { expiredWithinGrace: true }))).toBe('CERT_UNTRUSTED');
    // The founding manager's own certificate is recorded and passes; one forged in its name does not.
    expect((await t.authoriser.authorize(t.managerCert, ['manager', 'admin'])).nodeId).toBe(t.managerId);
    expect(await codeOf(t.authoriser.authorize(await forge('manager', t.managerId), ['manager', 'admin']))).toBe('CERT_UNTRUSTED');
    // The genuine certificate of the same node still passes.
    expect((await t.authoriser.authorize(worker.cert, ['manager', 'worker'])).nodeId).toBe(worker.response.nodeId);
  });

  it('accepts the certificate a renewal replaced while the new one lands, and no older one', async () => {
    const first = await joinAs('worker');
    const renew = async (cert: X509Certificate) => new X509Certificate((await t.caServer.renew(await t.authoriser.authorize(cert, ['manager', 'worker']), { csr: freshCsr().csr })).certificate);
    const second = await renew(first.cert);
    expect((await t.authoriser.authorize(first.cert, ['manager', 'worker'])).nodeId).toBe(first.response.nodeId);
    expect((await t.authoriser.authorize(second, ['manager', 'worker'])).nodeId).toBe(first.response.nodeId);
    const third = await renew(second);
    expect(await codeOf(t.authoriser.authorize(first.cert, ['manager', 'worker']))).toBe('CERT_UNTRUSTED');
    expect((await t.authoriser.authorize(second, ['manager', 'worker'])).nodeId).toBe(first.response.nodeId);
    expect((await t.authoriser.authorize(third, ['manager', 'worker'])).nodeId).toBe(first.response.nodeId);
  });
});
