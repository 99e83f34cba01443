/**
 * The admin CA (issue 28 item 3): API users' certificates are issued by a
 * self-signed CA of their own that the root cross-certifies. `openssl verify`
 * with that CA alone as the anchor admits them and refuses node
 * certificates; muster's own API keeps accepting API users issued under the
 * root before it existed; an API user renews its own certificate (same name
 * and lifetime), a revoked one cannot; a root rotation keeps the anchor and
 * has the new root certify it.
 */
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemRandom } from '../../../src/core/random.js';
import type { Caller } from '../../../src/manager/state/caller.js';
import { ADMIN_CA_COMMON_NAME, loadSigningCa } from '../../../src/pki/ca.js';
import { parseCsr } from '../../../src/pki/csr.js';
import { issueCertificate } from '../../../src/pki/issue.js';
import { readBundle } from '../../../src/pki/peer.js';
import { unseal } from '../../../src/pki/seal.js';
import { SEAL_CONTEXT, currentSigningCa } from '../../../src/manager/state/signer.js';
import { certificateRecord } from '../../../src/manager/services/ca-server.js';
import { KEYS, transact } from '../../../src/store/cluster-store.js';
import { opensslStatus, scratchDir } from '../../helpers/openssl.js';
import { HOUR, foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';

const scratch = scratchDir('muster-admin-ca-');
let files = 0;
const write = (text: string): string => scratch.write(`f${files++}.pem`, text);
afterAll(() => scratch.cleanup());

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
}

/** `openssl verify` of a certificate file (leaf first, then the chain it is sent with) against one anchor file. */
function verify(anchor: string, certPem: string, extra: string[] = []): { status: number; output: string } {
  const file = write(certPem);
  return opensslStatus(['verify', ...extra, '-CAfile', anchor, '-untrusted', file, file]);
}

describe('a new cluster', () => {
  let t: TestCluster;
  let owner: Caller;
  beforeAll(async () => {
    t = await foundTestCluster({ certExpiryMs: 24 * HOUR });
    await t.rotation.stop();
    owner = await t.authoriser.authorize(t.managerCert, ['manager', 'admin']);
  });
  afterAll(() => t.cleanup());

  it('issues API users from the admin CA: the anchor admits them and refuses worker and manager certificates (also with -partial_chain)', async () => {
    const anchorPem = await t.adminCa.anchor();
    const anchorCert = new X509Certificate(anchorPem);
    expect(anchorCert.subject).toBe(`O=${t.clusterId}\nCN=${ADMIN_CA_COMMON_NAME}`);
    expect(anchorCert.checkIssued(anchorCert)).toBe(true); // self-signed: nginx needs no partial chain
    const anchor = write(anchorPem);
    const root = write(t.state.root.pem);

    const user = await t.caServer.issueUser({ name: 'alice', csr: freshCsr().csr }, owner);
    const [leaf, cross] = readBundle(user.certificate);
    expect(leaf!.checkIssued(anchorCert)).toBe(true);
    expect(cross!.subject).toBe(anchorCert.subject);
    expect(cross!.checkIssued(new X509Certificate(t.state.root.pem))).toBe(true);
    const worker = await t.caServer.join({ token: t.settings.joinTokens().worker, csr: freshCsr().csr }, '10.0.0.1');

    for (const extra of [[], ['-partial_chain']]) {
      const admitted = verify(anchor, user.certificate, extra);
      expect(admitted.status, admitted.output).toBe(0);
      expect(verify(anchor, worker.certificate, extra).status).not.toBe(0);
      expect(verify(anchor, t.managerTls.certPem, extra).status).not.toBe(0);
    }
    // With the chain it is sent with, an API user's certificate still leads to the cluster root.
    expect(verify(root, user.certificate).status).toBe(0);
    expect((await t.authoriser.authorize(leaf!, ['manager', 'admin'])).role).toBe('admin');
  });

  it("accepts API users issued under the root before the admin CA existed; a node certificate made with the admin CA's key is refused", async () => {
    // What muster issued before: a leaf signed by the root itself, recorded.
    const rootCa = currentSigningCa(t.state.ca, t.dataKey)!;
    const csr = parseCsr(freshCsr().csr);
    const old = issueCertificate({
      ca: rootCa,
      csr,
      role: 'admin',
      commonName: 'legacy',
      clusterId: t.clusterId,
      validityMs: 24 * HOUR,
      clock: t.clock,
      random: systemRandom,
    });
    await transact(t.store, async (tx) => tx.put(KEYS.certificates.ref(old.serial), certificateRecord('legacy', 'admin', 'user', t.clock.now(), old)));
    const legacy = await t.authoriser.authorize(new X509Certificate(old.certPem), ['manager', 'admin']);
    expect(legacy.nodeId).toBe('legacy');
    // It renews into the admin CA.
    const renewed = await t.caServer.renewUser(legacy, { csr: freshCsr().csr });
    expect(new X509Certificate(renewed.certificate).checkIssued(t.state.trust.admin!)).toBe(true);

    const adminCa = loadSigningCa({
      certPem: t.state.ca.admin!.certPem,
      keyPem: unseal(t.dataKey, t.state.ca.admin!.key, SEAL_CONTEXT.adminKey).toString('utf8'),
    });
    const forged = issueCertificate({
      ca: adminCa,
      csr,
      role: 'manager',
      commonName: t.managerId,
      clusterId: t.clusterId,
      validityMs: HOUR,
      clock: t.clock,
      random: systemRandom,
    });
    expect(await codeOf(t.authoriser.authorize(new X509Certificate(forged.certPem), ['manager', 'admin']))).toBe('CERT_UNTRUSTED');
  });

  it('an API user renews its own certificate: same name and lifetime, a later expiry, audited; a revoked one and a manager cannot', async () => {
    const issued = await t.caServer.issueUser({ name: 'bob', csr: freshCsr().csr, expiry: '3h' }, owner);
    const before = new X509Certificate(issued.certificate);
    const bob = await t.authoriser.authorize(before, ['admin']);
    t.clock.advance(2 * HOUR);
    const renewed = await t.caServer.renewUser(bob, { csr: freshCsr().csr });
    const after = new X509Certificate(renewed.certificate);
    expect(after.subject).toBe(before.subject);
    expect(after.serialNumber).not.toBe(before.serialNumber);
    expect(Date.parse(after.validTo)).toBe(Date.parse(before.validTo) + 2 * HOUR);
    expect(Date.parse(after.validTo) - Date.parse(after.validFrom)).toBe(Date.parse(before.validTo) - Date.parse(before.validFrom));
    expect(renewed.rootCA).toBe(t.state.trust.bundlePem);
    const line = t.auditLines
      .map((l) => JSON.parse(l) as { action: string; result: string; serial?: string })
      .find((l) => l.action === 'user.renew' && l.serial === after.serialNumber);
    expect(line?.result).toBe('ok');

    await t.caServer.revokeUser('bob', owner);
    expect(await codeOf(t.authoriser.authorize(after, ['admin']))).toBe('CERT_REVOKED');
    // A revocation that lands after the authorisation still refuses the renewal (the transaction reads the record).
    expect(await codeOf(t.caServer.renewUser(bob, { csr: freshCsr().csr }))).toBe('CERT_REVOKED');
    expect(t.auditLines.some((l) => /"action":"user.renew".*"CERT_REVOKED"/.test(l))).toBe(true);
    expect(await codeOf(t.caServer.renewUser(owner, { csr: freshCsr().csr }))).toBe('AUTH_FORBIDDEN');
  });

  it('a root rotation keeps the anchor and has the new root certify it; users from before keep working', async () => {
    const anchorBefore = await t.adminCa.anchor();
    const before = await t.caServer.issueUser({ name: 'carol', csr: freshCsr().csr }, owner);
    await t.rotation.start({}, owner);
    const newRoot = new X509Certificate(t.state.trust.signing.pem);
    expect(t.state.ca.rotation?.adminCrossSignedPem).toBeDefined();
    const during = await t.caServer.issueUser({ name: 'dave', csr: freshCsr().csr }, owner);
    const [leaf, adminCross, rootCross] = readBundle(during.certificate);
    expect(leaf!.checkIssued(t.state.trust.admin!)).toBe(true);
    expect(adminCross!.checkIssued(newRoot)).toBe(true);
    expect(rootCross!.subject).toBe(newRoot.subject);
    // Nodes that trust only the old root, or only the new one, verify it through its chain.
    // The cluster's clock ran ahead in the tests before: openssl checks at its time.
    const at = ['-attime', String(Math.floor(t.clock.now() / 1000))];
    const viaOld = verify(write(t.state.root.pem), during.certificate, at);
    expect(viaOld.status, viaOld.output).toBe(0);
    expect(verify(write(newRoot.toString()), during.certificate, at).status).toBe(0);

    const renewed = await t.caServer.renew(await t.authoriser.authorize(t.managerCert, ['manager', 'worker']), { csr: freshCsr().csr });
    expect(new X509Certificate(renewed.certificate).checkIssued(newRoot)).toBe(true);
    const workers = (await t.inventory.listNodes()).nodes.filter((n) => n.role === 'worker');
    for (const w of workers) await t.inventory.removeNode(w.id, { force: true }, owner);
    t.clock.advance(2_500);
    expect(await t.rotation.reconcile()).toBe(true);
    expect(t.state.ca.rotation).toBeUndefined();
    expect(new X509Certificate(t.state.ca.admin!.crossSignedPem).checkIssued(newRoot)).toBe(true);
    expect(await t.adminCa.anchor()).toBe(anchorBefore);
    const anchor = write(anchorBefore);
    for (const pem of [before.certificate, during.certificate]) {
      expect(verify(anchor, pem, at).status).toBe(0);
      expect((await t.authoriser.authorize(readBundle(pem)[0]!, ['admin'])).role).toBe('admin');
    }
    const after = await t.caServer.issueUser({ name: 'erin', csr: freshCsr().csr }, owner);
    expect(readBundle(after.certificate)).toHaveLength(2); // the leaf and the admin CA under the new root, nothing more
    expect(verify(write(newRoot.toString()), after.certificate, at).status).toBe(0);
  });
});

describe('a cluster founded before the admin CA', () => {
  let t: TestCluster;
  beforeAll(async () => {
    t = await foundTestCluster();
    // As such a store holds it: no admin CA in the CA record.
    await transact(t.store, async (tx) => {
      const { admin: _admin, ...ca } = (await tx.get(KEYS.ca))!;
      tx.put(KEYS.ca, ca);
    });
    await t.state.refresh();
    expect(t.state.ca.admin).toBeUndefined();
  });
  afterAll(() => t.cleanup());

  it('gets one at its first API user (sealed like the root key), and the anchor', async () => {
    const user = await t.caServer.issueUser({ name: 'alice', csr: freshCsr().csr });
    const admin = t.state.ca.admin;
    expect(admin).toBeDefined();
    expect(unseal(t.dataKey, admin!.key, SEAL_CONTEXT.adminKey).toString('utf8')).toMatch(/BEGIN PRIVATE KEY/);
    expect(new X509Certificate(user.certificate).checkIssued(new X509Certificate(admin!.certPem))).toBe(true);
    expect(await t.adminCa.anchor()).toBe(admin!.certPem);
  });
});

describe('a cluster whose root key an external CA holds', () => {
  let t: TestCluster;
  beforeAll(async () => {
    t = await foundTestCluster();
    // Its CA record: no root key, so no admin CA (cross-certifying needs the root key).
    await transact(t.store, async (tx) => {
      const { admin: _admin, key: _key, ...ca } = (await tx.get(KEYS.ca))!;
      tx.put(KEYS.ca, { ...ca, external: [{ url: 'https://127.0.0.1:1' }] });
    });
    await t.state.refresh();
  });
  afterAll(() => t.cleanup());

  it('has no admin CA: the anchor is refused with ADMIN_CA_UNAVAILABLE', async () => {
    expect(t.state.signer.external).toBe(true);
    await t.adminCa.ensure();
    expect(t.state.ca.admin).toBeUndefined();
    expect(await codeOf(t.adminCa.anchor())).toBe('ADMIN_CA_UNAVAILABLE');
  });
});
