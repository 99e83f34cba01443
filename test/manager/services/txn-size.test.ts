/**
 * Requests whose one transaction grew with what a node or a user holds, on
 * etcd with its default 128 operations per Txn (past it etcd refuses the
 * Txn and the request failed with INTERNAL).
 *
 * A node holds at most MAX_SERVICE_CERTS service certificates that have not
 * expired, on etcd with its default 128 operations per Txn: removing the
 * node lists every one of them on the CRL in the removal's one transaction,
 * and a node free to add names could make that transaction too large to
 * commit (a removal refused with INTERNAL). Past the bound a new name is
 * refused with SERVICE_LIMIT (409) before anything is signed; a name the
 * node has renews; expired ones leave the record and free their places.
 *
 * Revoking an API user revokes every certificate it was given, in batches:
 * a user given one by every CI run may hold hundreds.
 */
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MusterError } from '../../../src/core/errors.js';
import { NODES } from '../../../src/api/routes.js';
import { MAX_SERVICE_CERTS } from '../../../src/manager/services/ca-server.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { codeOf } from '../../helpers/codes.js';
import { HOUR, foundOnEtcd, freshCsr, type TestCluster } from '../../helpers/service.js';
import { slow } from '../../helpers/slowdown.js';

describe('on etcd (128 operations per Txn)', () => {
  let t: TestCluster;
  let stop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    ({ t, stop } = await foundOnEtcd('services'));
  }, slow(30_000));
  afterAll(async () => {
    await stop?.();
  });

  it(
    `${MAX_SERVICE_CERTS} names, then SERVICE_LIMIT (409) for another until some expire; the node with all of them removed in one commit, each on the CRL`,
    async () => {
      const joined = await t.caServer.join({ token: t.settings.joinTokens().worker, csr: freshCsr().csr, hostname: 'web-1' }, '10.0.0.1');
      let cert = new X509Certificate(joined.certificate);
      const caller = () => t.authoriser.authorize(cert, NODES);
      const issue = async (name: string) => t.caServer.issueService(await caller(), { name, csr: freshCsr().csr, sans: [], client: true });
      const ref = KEYS.nodes.ref(joined.nodeId);

      // Half of them now, half twelve hours later: the first half expires first.
      const early: string[] = [];
      for (let i = 0; i < MAX_SERVICE_CERTS / 2; i++) early.push((await issue(`early-${i}`)).serial);
      t.clock.advance(12 * HOUR);
      cert = new X509Certificate((await t.caServer.renew(await caller(), { csr: freshCsr().csr })).certificate); // the node renews on its own schedule
      const late: string[] = [];
      for (let i = 0; i < MAX_SERVICE_CERTS / 2; i++) late.push((await issue(`late-${i}`)).serial);

      const refused = await issue('one-more').catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(MusterError);
      expect(refused).toMatchObject({ code: 'SERVICE_LIMIT', statusCode: 409 });
      expect(Object.keys((await t.store.get(ref))!.value.services ?? {})).toHaveLength(MAX_SERVICE_CERTS);
      // A name it holds renews all the same.
      late[0] = (await issue('late-0')).serial;

      // The early half expires: their places are free, and they leave the record with the next issuance.
      t.clock.advance(12 * HOUR + 60_000);
      for (let i = 0; i < MAX_SERVICE_CERTS / 2; i++) late.push((await issue(`later-${i}`)).serial);
      const services = (await t.store.get(ref))!.value.services ?? {};
      expect(Object.keys(services).filter((name) => name.startsWith('early-'))).toEqual([]);
      expect(Object.keys(services)).toHaveLength(MAX_SERVICE_CERTS);
      expect(await issue('one-more').catch((error: unknown) => (error as MusterError).code)).toBe('SERVICE_LIMIT');

      // Removed with every certificate it holds (revoke-all): one transaction, committed, all of them on the CRL.
      await expect(t.inventory.removeNode(joined.nodeId, { force: true, revokeAll: true })).resolves.toMatchObject({ status: 'removed' });
      await t.state.refresh();
      const listed = (await t.revocations.crl()).serials;
      for (const serial of [...late, cert.serialNumber]) expect(listed.has(serial), serial).toBe(true);
      for (const serial of early) expect(listed.has(serial), `${serial} expired: not listed`).toBe(false);
    },
    slow(60_000),
  );

  it(
    'revoking an API user who holds 150 certificates revokes every one, each refused and on the CRL',
    async () => {
      // As the manager's own process asks (no caller): the founding manager's certificate expired on the clock above.
      const certs: X509Certificate[] = [];
      for (let i = 0; i < 150; i++) certs.push(new X509Certificate((await t.caServer.issueUser({ name: 'ci-bot', csr: freshCsr().csr })).certificate));
      const revoked = await t.caServer.revokeUser('ci-bot');
      expect(revoked.revoked).toBe(150);
      expect(new Set(revoked.serials)).toEqual(new Set(certs.map((c) => c.serialNumber)));
      await t.state.refresh();
      const listed = (await t.revocations.crl()).serials;
      for (const cert of certs) expect(listed.has(cert.serialNumber), cert.serialNumber).toBe(true);
      for (const cert of [certs[0]!, certs[149]!]) expect(await codeOf(t.authoriser.authorize(cert, ['admin']))).toMatch(/^(CERT_REVOKED|CERT_UNTRUSTED)$/);
      // Again: nothing left to revoke; a name never given a certificate is USER_NOT_FOUND.
      expect((await t.caServer.revokeUser('ci-bot')).revoked).toBe(0);
      expect(await codeOf(t.caServer.revokeUser('nobody'))).toBe('USER_NOT_FOUND');
    },
    slow(60_000),
  );
});
