/**
 * The denylist and the signed CRL (issue 17): removed nodes, revoked API
 * users, demoted managers' manager certificates and, with --revoke-all,
 * superseded certificates are listed; `openssl crl -verify` and `openssl
 * verify -crl_check` accept the CRL; entries leave it (and the store) when
 * their certificates expire, so the list is bounded by what is still valid.
 */
import { X509Certificate } from 'node:crypto';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Caller } from '../../../src/manager/state/caller.js';
import { CRL_LIFETIME_MS, CRL_REFRESH_AFTER_MS } from '../../../src/manager/services/revocations.js';
import { DEFAULT_RENEW_GRACE_MS } from '../../../src/api/routes.js';
import { rootIdentity } from '../../../src/pki/ca.js';
import { CRL_PEM_LABEL, parseCrl } from '../../../src/pki/crl.js';
import { toPem } from '../../../src/pki/der.js';
import { KEYS, transact } from '../../../src/store/cluster-store.js';
import { opensslStatus, scratchDir } from '../../helpers/openssl.js';
import { HOUR, foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';

const scratch = scratchDir('muster-crl-');
// A cluster of its own for each test of 'the CRL', so each passes alone and in any order.
let t: TestCluster;
let admin: Caller;
let rootFile: string;
afterAll(() => scratch.cleanup());

let files = 0;
const write = (text: string | Buffer): string => scratch.write(`f${files++}.pem`, text);
const crlNow = async () => parseCrl((await t.revocations.crl()).der, new X509Certificate(t.state.root.pem));
const crlFile = async (): Promise<string> => write(toPem((await t.revocations.crl()).der, CRL_PEM_LABEL));

async function joinNode(role: 'worker' | 'manager' = 'worker') {
  const tokens = t.settings.joinTokens();
  const response = await t.caServer.join({ token: tokens[role], csr: freshCsr().csr, managerAddr: '127.0.0.9:4377' }, '10.0.0.1');
  return { id: response.nodeId, certPem: response.certificate, serial: new X509Certificate(response.certificate).serialNumber };
}

async function renew(id: string, certPem: string) {
  const caller = await t.authoriser.authorize(new X509Certificate(certPem), ['manager', 'worker'], { expiredWithinGrace: true });
  const response = await t.caServer.renew(caller, { csr: freshCsr().csr });
  return { certPem: response.certificate, serial: new X509Certificate(response.certificate).serialNumber, id };
}

describe('the CRL', () => {
  beforeEach(async () => {
    t = await foundTestCluster({ shared: true, certExpiryMs: 24 * HOUR });
    admin = await t.authoriser.authorize(t.managerCert, ['manager', 'admin']);
    rootFile = write(t.state.root.pem);
  });
  afterEach(() => t.cleanup());

  it('starts empty, verifies with openssl, and names a distribution point in every certificate the managers sign', async () => {
    const empty = await crlNow();
    expect(empty.serials.size).toBe(0);
    const check = opensslStatus(['crl', '-in', await crlFile(), '-CAfile', rootFile, '-noout', '-verify']);
    expect(check.output).toMatch(/verify OK/);
    const worker = await joinNode();
    const text = opensslStatus(['x509', '-in', write(worker.certPem), '-noout', '-ext', 'crlDistributionPoints']).output;
    expect(text).toMatch(/URI:https:\/\/127\.0\.0\.1:4377\/v1\/crl/);
  });

  it("lists a removed node's certificate and a revoked API user's; openssl verify -crl_check refuses both and accepts the others", async () => {
    const removed = await joinNode();
    const kept = await joinNode();
    await t.inventory.removeNode(removed.id, { force: true }, admin);
    const user = await t.caServer.issueUser({ name: 'alice', csr: freshCsr().csr }, admin);
    const userSerial = new X509Certificate(user.certificate).serialNumber;
    const before = (await crlNow()).number;
    await t.caServer.revokeUser('alice', admin);
    const crl = await crlNow();
    expect(crl.number).toBeGreaterThan(before);
    expect([...crl.serials].sort()).toEqual([removed.serial, userSerial].sort());
    expect(crl.entries.find((e) => e.serial === removed.serial)?.reason).toBe('cessationOfOperation');
    expect(crl.entries.find((e) => e.serial === userSerial)?.reason).toBe('privilegeWithdrawn');

    const file = await crlFile();
    expect(opensslStatus(['crl', '-in', file, '-CAfile', rootFile, '-noout', '-verify']).output).toMatch(/verify OK/);
    const text = opensslStatus(['crl', '-in', file, '-noout', '-text']).output;
    expect(text).toContain(`Serial Number: ${removed.serial}`);
    expect(text).toContain(`Serial Number: ${userSerial}`);
    const verify = (pem: string) => opensslStatus(['verify', '-crl_check', '-CAfile', rootFile, '-CRLfile', file, write(pem)]);
    expect(verify(removed.certPem).output).toMatch(/certificate revoked/);
    // An API user's certificate is the admin CA's: the admin CA signs a CRL of its own, among those GET /v1/crl?format=pem serves.
    const userFile = write(user.certificate);
    const allCrls = write((await t.revocations.crls()).map((c) => toPem(c.der, CRL_PEM_LABEL)).join(''));
    expect(opensslStatus(['verify', '-crl_check', '-CAfile', rootFile, '-untrusted', userFile, '-CRLfile', allCrls, userFile]).output).toMatch(
      /certificate revoked/,
    );
    const ok = verify(kept.certPem);
    expect(ok.output).toMatch(/OK/);
    expect(ok.status).toBe(0);
  });

  it("lists a demoted manager's manager certificates, not its worker one", async () => {
    const manager = await joinNode('manager');
    await t.inventory.setRole(manager.id, 'worker', admin);
    const renewed = await renew(manager.id, manager.certPem);
    const crl = await crlNow();
    expect(crl.serials.has(manager.serial)).toBe(true);
    expect(crl.entries.find((e) => e.serial === manager.serial)?.reason).toBe('privilegeWithdrawn');
    expect(crl.serials.has(renewed.serial)).toBe(false);
  });

  it('a certificate already listed is not listed again, except that a key compromise overrides the earlier reason', async () => {
    const manager = await joinNode('manager');
    await t.inventory.setRole(manager.id, 'worker', admin);
    const first = (await t.store.get(KEYS.revoked.ref(manager.serial)))!;
    await t.inventory.setRole(manager.id, 'manager', admin);
    await t.inventory.setRole(manager.id, 'worker', admin); // lists nothing new: the entry is not written again
    expect((await t.store.get(KEYS.revoked.ref(manager.serial)))!.version).toBe(first.version);
    await t.inventory.removeNode(manager.id, { force: true, revokeAll: true }, admin);
    const entry = (await t.store.get(KEYS.revoked.ref(manager.serial)))!.value;
    expect([entry.reason, entry.revokedAt]).toEqual(['keyCompromise', first.value.revokedAt]);
  });

  it('node rm lists the current certificate; --revoke-all every still-valid one, as a key compromise', async () => {
    const a = await joinNode();
    const a2 = await renew(a.id, a.certPem);
    const b = await joinNode();
    const b2 = await renew(b.id, b.certPem);
    expect((await t.store.get(KEYS.nodes.ref(b.id)))!.value.superseded?.map((s) => s.serial)).toEqual([b.serial]);
    await t.inventory.removeNode(a.id, { force: true }, admin);
    await t.inventory.removeNode(b.id, { force: true, revokeAll: true }, admin);
    const crl = await crlNow();
    expect(crl.serials.has(a2.serial)).toBe(true);
    expect(crl.serials.has(a.serial)).toBe(false);
    expect(crl.serials.has(b2.serial) && crl.serials.has(b.serial)).toBe(true);
    expect(crl.entries.find((e) => e.serial === b.serial)?.reason).toBe('keyCompromise');
  });

  it('is valid for an hour and re-issued with a higher number once it is older than the refresh age', async () => {
    const removed = await joinNode();
    await t.inventory.removeNode(removed.id, { force: true }, admin);
    const first = await crlNow();
    expect([...first.serials]).toEqual([removed.serial]);
    expect(first.nextUpdate - first.thisUpdate).toBe(CRL_LIFETIME_MS);
    expect((await crlNow()).number).toBe(first.number); // cached: same number
    t.clock.advance(CRL_REFRESH_AFTER_MS + 1000);
    const next = await crlNow();
    expect(next.number).toBe(first.number + 1);
    expect(next.thisUpdate).toBeGreaterThan(first.thisUpdate);
    expect([...next.serials].sort()).toEqual([...first.serials].sort());
    // A refresh alone does not make nodes fetch again: the list did not change.
    expect(t.revocations.number).toBeLessThan(next.number);
  });

  it('drops entries, from the CRL and the store, once their certificates have expired', async () => {
    await t.inventory.removeNode((await joinNode()).id, { force: true }, admin);
    await t.caServer.issueUser({ name: 'alice', csr: freshCsr().csr }, admin);
    await t.caServer.revokeUser('alice', admin);
    const listed = (await t.store.list(KEYS.revoked)).length;
    expect(listed).toBeGreaterThan(0);
    t.clock.advance(25 * HOUR); // every certificate issued so far (24h) has expired
    const crl = await crlNow();
    expect(crl.serials.size).toBe(0);
    expect(await t.store.list(KEYS.revoked)).toHaveLength(0);
    expect(t.revocations.number).toBe(crl.number); // the list changed: nodes fetch it
  });

  it('two prunes at once (two managers, or the janitor and a fetch) both finish, and delete each entry once', async () => {
    const node = await joinNode();
    await t.inventory.removeNode(node.id, { force: true }, admin);
    expect((await t.store.list(KEYS.revoked)).length).toBe(1);
    t.clock.advance(25 * HOUR);
    const [a, b] = await Promise.all([t.revocations.prune(), t.revocations.prune()]);
    expect(a + b).toBe(1);
    expect(await t.store.list(KEYS.revoked)).toHaveLength(0);
  });

  it('the audit trail has the removals, the revocation and the demotion with their serials', async () => {
    await t.inventory.removeNode((await joinNode()).id, { force: true }, admin);
    await t.caServer.issueUser({ name: 'alice', csr: freshCsr().csr }, admin);
    await t.caServer.revokeUser('alice', admin);
    await t.inventory.setRole((await joinNode('manager')).id, 'worker', admin);
    const lines = t.auditLines.map((l) => JSON.parse(l) as { action: string; serials?: string[]; actor: { cn?: string } });
    for (const action of ['node.rm', 'user.revoke', 'node.demote']) {
      const line = lines.find((l) => l.action === action);
      expect(line?.actor.cn).toBe(t.managerId);
      expect(line?.serials?.length).toBeGreaterThan(0);
    }
  });
});

describe('CRLs across a root rotation', () => {
  const keyIdOf = (cert: X509Certificate): string => rootIdentity(cert.toString()).keyId.toString('hex');
  /** The admin CA's key identifier: it signs its CRL too, after the roots' (it is kept through a rotation). */
  const adminKeyId = (r: TestCluster): string => rootIdentity(r.state.ca.admin!.certPem).keyId.toString('hex');
  const clusters: TestCluster[] = [];
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((c) => c.cleanup()));
  });

  /** Each test's own cluster, in a rotation it started (the test completes it itself, on the fake clock), with one node removed during it. */
  async function rotating() {
    const r = await foundTestCluster({ certExpiryMs: 24 * HOUR });
    clusters.push(r);
    await r.rotation.stop();
    const owner = await r.authoriser.authorize(r.managerCert, ['manager', 'admin']);
    const oldRoot = new X509Certificate(r.state.root.pem);
    const before = (await r.revocations.crls()).map((c) => c.issuer);
    await r.rotation.start({}, owner);
    const newRoot = new X509Certificate(r.state.trust.signing.pem);
    const joined = await r.caServer.join({ token: r.settings.joinTokens().worker, csr: freshCsr().csr }, '10.0.0.1');
    await r.inventory.removeNode(joined.nodeId, { force: true }, owner);
    return { r, oldRoot, newRoot, before, joined, removedSerial: new X509Certificate(joined.certificate).serialNumber };
  }

  /** The rotation completed: the manager renewed under the new root, and the leader reconciled. */
  async function rotated() {
    const x = await rotating();
    const renewed = await x.r.caServer.renew(await x.r.authoriser.authorize(x.r.managerCert, ['manager', 'worker']), { csr: freshCsr().csr });
    x.r.clock.advance(2_500);
    const completed = await x.r.rotation.reconcile();
    return { ...x, renewed, completed };
  }

  it("while it runs, the old and the new root each sign a CRL of the same number and list; each certificate names its issuer's", async () => {
    const { r, oldRoot, newRoot, before, joined, removedSerial } = await rotating();
    expect(before).toEqual([keyIdOf(oldRoot), adminKeyId(r)]);
    const [current, next] = await r.revocations.crls();
    expect([current?.issuer, next?.issuer]).toEqual([keyIdOf(oldRoot), keyIdOf(newRoot)]);
    const [a, b] = [parseCrl(current!.der, oldRoot), parseCrl(next!.der, newRoot)];
    expect(a.number).toBe(b.number);
    expect([...a.serials]).toEqual([removedSerial]);
    expect([...b.serials]).toEqual([removedSerial]);
    expect((await r.revocations.crl()).der.equals(current!.der)).toBe(true); // what nodes fetch: the current root's
    expect((await r.revocations.crlOf(keyIdOf(newRoot))).der.equals(next!.der)).toBe(true);
    const point = opensslStatus(['x509', '-in', write(joined.certificate), '-noout', '-ext', 'crlDistributionPoints']).output;
    expect(point).toContain(`URI:https://127.0.0.1:4377/v1/crl/${keyIdOf(newRoot)}`);
    // openssl checks the new root's certificate against the new root's CRL.
    const bundle = write(`${oldRoot.toString()}${newRoot.toString()}`);
    const crls = write([current!, next!].map((c) => toPem(c.der, CRL_PEM_LABEL)).join(''));
    expect(opensslStatus(['verify', '-crl_check_all', '-CAfile', bundle, '-CRLfile', crls, write(joined.certificate)]).output).toMatch(/certificate revoked/);
  });

  it("after it, the old root's kept key signs its CRL until the old root's certificates have expired, then no more", async () => {
    const { r, oldRoot, newRoot, removedSerial, renewed, completed } = await rotated();
    expect(new X509Certificate(renewed.certificate).checkIssued(newRoot)).toBe(true);
    expect(completed).toBe(true);
    expect(r.state.ca.previous?.[0]?.key).toBeDefined(); // sealed, as the root key is
    const after = await r.revocations.crls();
    expect(after.map((c) => c.issuer)).toEqual([keyIdOf(newRoot), keyIdOf(oldRoot), adminKeyId(r)]);
    expect(parseCrl(after[1]!.der, oldRoot).serials.has(removedSerial)).toBe(true);
    expect(parseCrl(after[0]!.der, newRoot).number).toBeGreaterThan(0);

    r.clock.advance(24 * HOUR + DEFAULT_RENEW_GRACE_MS + 60_000);
    expect((await r.revocations.crls()).map((c) => c.issuer)).toEqual([keyIdOf(newRoot), adminKeyId(r)]);
    await expect(r.revocations.crlOf(keyIdOf(oldRoot))).rejects.toMatchObject({ code: 'CRL_ISSUER_UNKNOWN' });
  });

  it("a replaced root's key that cannot be read costs its CRL, not the signer", async () => {
    const { r, newRoot, completed } = await rotated();
    expect(completed).toBe(true);
    await transact(r.store, async (tx) => {
      const ca = (await tx.get(KEYS.ca))!;
      const [old] = ca.previous!;
      tx.put(KEYS.ca, { ...ca, previous: [{ ...old!, key: { ...old!.key!, data: Buffer.alloc(48).toString('base64') } }] });
    });
    await r.state.refresh();
    expect(r.logger.records.some((l) => l.level === 'warn' && /replaced cannot be read/.test(l.message))).toBe(true);
    expect(r.logger.records.some((l) => /keeping the previous signer/.test(l.message))).toBe(false);
    const joined = await r.caServer.join({ token: r.settings.joinTokens().worker, csr: freshCsr().csr }, '10.0.0.2');
    expect(new X509Certificate(joined.certificate).checkIssued(newRoot)).toBe(true);
  });
});
