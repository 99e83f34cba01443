import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MusterError } from '../../../src/core/errors.js';
import { systemRandom } from '../../../src/core/random.js';
import { NODE_DOWN_AFTER_MS } from '../../../src/manager/services/inventory.js';
import { SEAL_CONTEXT } from '../../../src/manager/state/signer.js';
import { createRootCa, loadSigningCa } from '../../../src/pki/ca.js';
import { parseCsr } from '../../../src/pki/csr.js';
import { issueCertificate } from '../../../src/pki/issue.js';
import { unseal } from '../../../src/pki/seal.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { newId } from '../../../src/core/ids.js';
import { DEFAULT_RENEW_GRACE_MS } from '../../../src/api/routes.js';
import type { Verified } from '../../../src/manager/http/authoriser.js';
import { IssuedPeer } from '../../../src/manager/http/peer.js';
import { codeOf } from '../../helpers/codes.js';
import { openssl, scratchDir } from '../../helpers/openssl.js';
import { HOUR, foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';

const DAY = 24 * HOUR;
const NODES = ['manager', 'worker'] as const;
const ADMINS = ['manager', 'admin'] as const;

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
    const renew = async (cert: X509Certificate) =>
      new X509Certificate((await t.caServer.renew(await t.authoriser.authorize(cert, ['manager', 'worker']), { csr: freshCsr().csr })).certificate);
    const second = await renew(first.cert);
    expect((await t.authoriser.authorize(first.cert, ['manager', 'worker'])).nodeId).toBe(first.response.nodeId);
    expect((await t.authoriser.authorize(second, ['manager', 'worker'])).nodeId).toBe(first.response.nodeId);
    const third = await renew(second);
    expect(await codeOf(t.authoriser.authorize(first.cert, ['manager', 'worker']))).toBe('CERT_UNTRUSTED');
    expect((await t.authoriser.authorize(second, ['manager', 'worker'])).nodeId).toBe(first.response.nodeId);
    expect((await t.authoriser.authorize(third, ['manager', 'worker'])).nodeId).toBe(first.response.nodeId);
  });
});

/** The error an authorisation fails with: its code and message (several checks share a code, the message says which one refused). */
async function refusal(promise: Promise<unknown>): Promise<{ code: string; message: string } | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (error instanceof MusterError) return { code: error.code, message: error.message };
    throw error;
  }
}

/** The cluster's root and its key, unsealed as a manager holds them. */
async function rootAndKey(): Promise<{ certPem: string; keyPem: string }> {
  const ca = (await t.store.get(KEYS.ca))!.value;
  return { certPem: ca.rootPem, keyPem: unseal(t.dataKey, ca.key!, SEAL_CONTEXT.caKey).toString('utf8') };
}

/** A certificate the cluster's root key signed outside muster (nothing in the store records it). */
async function forgeFor(clusterId: string, role: 'worker' | 'admin', commonName: string): Promise<X509Certificate> {
  const ca = loadSigningCa(await rootAndKey());
  return new X509Certificate(
    issueCertificate({ ca, csr: parseCsr(freshCsr().csr), role, commonName, clusterId, validityMs: HOUR, clock: t.clock, random: systemRandom }).certPem,
  );
}

describe('authorize: every branch (issue 32)', () => {
  it('refuses a certificate of a root a rotation replaced once that root is retired, though the certificate is still valid, cached or not', async () => {
    const worker = await joinAs('worker'); // 90 days, under the first root
    // The expiry is lowered before the rotation: the old root is then kept for 24h + the grace, less than the worker's 90 days.
    await t.settings.updateCluster({ certExpiry: '24h' });
    await t.rotation.stop(); // reconcile() is driven here, on the fake clock
    await t.rotation.start({}, await t.authoriser.authorize(t.managerCert, ADMINS));
    t.clock.advance(3 * 60_000); // the worker goes quiet and is not waited for
    await t.caServer.renew(await t.authoriser.authorize(t.managerCert, NODES), { csr: freshCsr().csr });
    t.clock.advance(2_500);
    expect(await t.rotation.reconcile()).toBe(true);
    await t.state.refresh();
    const retiredAt = t.state.trust.roots.find((root) => root.until !== undefined)!.until!;
    expect(retiredAt).toBeLessThan(Date.parse(worker.cert.validTo));
    const trust = t.state.trust;
    // Before the end date: accepted (and the chain check is now cached for this certificate object).
    expect((await t.authoriser.authorize(worker.cert, NODES)).fromSigningRoot).toBe(false);
    t.clock.set(retiredAt + 60_000);
    expect(t.state.trust).toBe(trust); // the same trust snapshot: the cache is not dropped by a change of roots
    expect(t.clock.now()).toBeLessThan(Date.parse(worker.cert.validTo));
    expect(await refusal(t.authoriser.authorize(worker.cert, NODES))).toMatchObject({ code: 'CERT_UNTRUSTED' });
    expect(await refusal(t.authoriser.authorize(new X509Certificate(worker.response.certificate), NODES))).toMatchObject({ code: 'CERT_UNTRUSTED' });
    expect(await refusal(t.authoriser.authorize(new X509Certificate(worker.response.certificate), NODES, { expiredWithinGrace: true }))).toMatchObject({
      code: 'CERT_UNTRUSTED',
    });
  });

  it('a certificate renewed on its connection is authorised as parsing it would be, without parsing it while the roots it was signed under hold', async () => {
    const worker = await joinAs('worker');
    let known: Verified | undefined;
    const renewed = await t.caServer.renew(await t.authoriser.authorize(worker.cert, NODES), { csr: freshCsr().csr }, (node, certificate, root) => {
      known = t.authoriser.issued(node, certificate, root);
    });
    expect(known).toBeDefined();
    const parsed = await t.authoriser.authorize(new X509Certificate(renewed.certificate), NODES);
    expect(await t.authoriser.authorize(new IssuedPeer(renewed.certificate, known), NODES)).toEqual(parsed);
    // What the issuance knows stands in for the parse: a PEM that is not one is never read…
    const unread = new IssuedPeer('not a certificate', known);
    expect((await t.authoriser.authorize(unread, NODES)).nodeId).toBe(worker.response.nodeId);
    // Once the roots change (a rotation starts), it is checked as any certificate: parsed.
    const trust = t.state.trust;
    await t.rotation.stop();
    await t.rotation.start({}, await t.authoriser.authorize(t.managerCert, ADMINS));
    await t.state.refresh();
    expect(t.state.trust).not.toBe(trust);
    await expect(t.authoriser.authorize(unread, NODES)).rejects.toThrow();
    expect((await t.authoriser.authorize(new IssuedPeer(renewed.certificate, known), NODES)).nodeId).toBe(worker.response.nodeId);
    // The store keeps the last word: a removal refuses it.
    await t.inventory.removeNode(worker.response.nodeId, { force: true });
    expect(await codeOf(t.authoriser.authorize(new IssuedPeer(renewed.certificate, known), NODES))).toBe('NODE_REMOVED');
  });

  it('refuses a certificate that expired after its chain check was cached for its connection', async () => {
    const worker = await joinAs('worker');
    const trust = t.state.trust;
    expect((await t.authoriser.authorize(worker.cert, NODES)).expired).toBe(false);
    t.clock.set(Date.parse(worker.cert.validTo) + 1_000);
    expect(t.state.trust).toBe(trust);
    expect(await codeOf(t.authoriser.authorize(worker.cert, NODES))).toBe('CERT_EXPIRED');
    expect(await codeOf(t.authoriser.authorize(worker.cert, ADMINS))).toBe('CERT_EXPIRED');
  });

  it('renews an expired certificate within the grace only if it is the newest one of its node, not the one a renewal replaced', async () => {
    const renewed = await joinAs('worker');
    const idle = await joinAs('worker');
    t.clock.advance(60 * DAY);
    const second = new X509Certificate((await t.caServer.renew(await t.authoriser.authorize(renewed.cert, NODES), { csr: freshCsr().csr })).certificate);
    t.clock.set(Date.parse(renewed.cert.validTo) + DAY); // both first certificates expired a day ago, well within the grace
    expect(DAY).toBeLessThan(DEFAULT_RENEW_GRACE_MS);
    expect(await refusal(t.authoriser.authorize(renewed.cert, NODES, { expiredWithinGrace: true }))).toEqual({
      code: 'CERT_EXPIRED',
      message: expect.stringMatching(/not the newest/),
    });
    // The newest certificate of a node that never renewed is renewable; the replacement of the other is simply valid.
    expect(await t.authoriser.authorize(idle.cert, NODES, { expiredWithinGrace: true })).toMatchObject({ nodeId: idle.response.nodeId, expired: true });
    expect(await t.authoriser.authorize(second, NODES)).toMatchObject({ nodeId: renewed.response.nodeId, expired: false });
  });

  it("refuses a certificate the cluster's own root key signed for another cluster", async () => {
    const worker = await joinAs('worker');
    const other = newId(systemRandom);
    for (const cert of [await forgeFor(other, 'worker', worker.response.nodeId), await forgeFor(other, 'admin', 'alice')]) {
      expect(await refusal(t.authoriser.authorize(cert, ['manager', 'worker', 'admin']))).toEqual({
        code: 'CERT_UNTRUSTED',
        message: 'the certificate does not belong to this cluster',
      });
    }
  });

  it("refuses a certificate the cluster's own root key signed with no role muster issues (an OU it never writes)", async () => {
    const scratch = scratchDir('muster-authz-');
    try {
      const root = await rootAndKey();
      const rootFile = scratch.write('root.pem', root.certPem);
      const keyFile = scratch.write('root.key', root.keyPem);
      scratch.write('req.cnf', '[req]\ndistinguished_name=dn\nprompt=no\n[dn]\n');
      for (const ou of [undefined, 'swarm-operator']) {
        const subject = `/O=${t.clusterId}${ou === undefined ? '' : `/OU=${ou}`}/CN=${t.managerId}`;
        openssl([
          'req',
          '-new',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          scratch.path('leaf.key'),
          '-subj',
          subject,
          '-config',
          scratch.path('req.cnf'),
          '-out',
          scratch.path('leaf.csr'),
        ]);
        const pem = openssl(['x509', '-req', '-in', scratch.path('leaf.csr'), '-CA', rootFile, '-CAkey', keyFile, '-set_serial', '4242', '-days', '1']);
        const cert = new X509Certificate(pem);
        expect(cert.subject).toContain(`CN=${t.managerId}`);
        t.clock.set(Date.parse(cert.validFrom) + 60_000); // openssl dates it by the real clock
        expect(await refusal(t.authoriser.authorize(cert, ['manager', 'worker', 'admin'])), subject).toEqual({
          code: 'CERT_UNTRUSTED',
          message: 'the certificate does not belong to this cluster',
        });
      }
    } finally {
      scratch.cleanup();
    }
  });

  it('refuses an API-user certificate whose issue record names another role or another user', async () => {
    const key = freshCsr();
    const user = await t.caServer.issueUser({ name: 'alice', csr: key.csr });
    const cert = new X509Certificate(user.certificate);
    const ref = KEYS.certificates.ref(cert.serialNumber);
    const entry = await t.store.get(ref);
    expect(entry?.value).toMatchObject({ role: 'admin', subject: 'alice' });
    expect((await t.authoriser.authorize(cert, ADMINS)).nodeId).toBe('alice');
    const rewrite = async (change: { role?: 'worker'; subject?: string }) => {
      const now = (await t.store.get(ref))!;
      expect(
        await t.store.commit({
          compares: [{ key: ref.key, version: now.version }],
          puts: [{ key: ref.key, value: { ...entry!.value, ...change } }],
          deletes: [],
        }),
      ).toBe(true);
    };
    await rewrite({ role: 'worker' });
    expect(await refusal(t.authoriser.authorize(cert, ADMINS))).toEqual({
      code: 'AUTH_FORBIDDEN',
      message: 'this API-user certificate is not one this cluster issued',
    });
    await rewrite({ subject: 'bob' });
    expect(await refusal(t.authoriser.authorize(cert, ADMINS))).toEqual({
      code: 'AUTH_FORBIDDEN',
      message: 'this API-user certificate is not one this cluster issued',
    });
    await rewrite({});
    expect((await t.authoriser.authorize(cert, ADMINS)).nodeId).toBe('alice');
  });

  it('refuses a node certificate signed by the root for a node ID the cluster does not know', async () => {
    const unknown = await forgeFor(t.clusterId, 'worker', newId(systemRandom));
    for (const allowed of [NODES, ADMINS]) {
      expect(await refusal(t.authoriser.authorize(unknown, allowed))).toEqual({
        code: 'AUTH_FORBIDDEN',
        message: 'this certificate names no node of this cluster',
      });
    }
  });
});
