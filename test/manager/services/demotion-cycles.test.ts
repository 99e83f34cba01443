/**
 * Promote → renew → demote, round after round, on one node within one
 * certificate lifetime (a probe of 1,500 rounds on three managers failed at
 * round 143: the demotion wrote a denylist entry for every manager
 * certificate the node had ever had, and the Txn passed etcd's 128
 * operations). Here etcd allows 32 operations per Txn, so the old shape
 * fails within a few rounds; every demotion must commit, and every manager
 * certificate the node was given must stay refused: on the CRL, and by the
 * authoriser.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_SUPERSEDED } from '../../../src/manager/services/revocations.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { codeOf } from '../../helpers/codes.js';
import { HOUR, foundOnEtcd, freshCsr, type TestCluster } from '../../helpers/service.js';
import { slow } from '../../helpers/slowdown.js';

/** Enough rounds that the old demotion (about 8 writes plus 2 per round) passes 32 operations. */
const ROUNDS = 24;

describe('promote, renew and demote one node again and again, on etcd with --max-txn-ops 32', () => {
  let t: TestCluster;
  let stop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    ({ t, stop } = await foundOnEtcd('cycles', ['--max-txn-ops', '32']));
  }, slow(30_000));
  afterAll(async () => {
    await stop?.();
  });

  it(
    "every demotion commits, and each of the node's manager certificates stays on the CRL and is refused as a manager",
    async () => {
      const admin = await t.authoriser.authorize(t.managerCert, ['manager', 'admin']);
      const joined = await t.caServer.join({ token: t.settings.joinTokens().worker, csr: freshCsr().csr }, '10.0.0.1');
      const id = joined.nodeId;
      let cert = new X509Certificate(joined.certificate);
      const renew = async (): Promise<X509Certificate> => {
        const caller = await t.authoriser.authorize(cert, ['manager', 'worker']);
        cert = new X509Certificate((await t.caServer.renew(caller, { csr: freshCsr().csr })).certificate);
        return cert;
      };
      const managerCerts: X509Certificate[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        t.clock.advance(60_000);
        await t.inventory.setRole(id, 'manager', admin);
        managerCerts.push(await renew()); // the promotion's renewal
        managerCerts.push(await renew()); // and one more as a manager
        await expect(t.inventory.setRole(id, 'worker', admin), `round ${round}`).resolves.toMatchObject({ role: 'worker' });
        await t.state.refresh(); // the CRL record as the store holds it now, not when the change feed brings it
        const listed = (await t.revocations.crl()).serials;
        for (const old of managerCerts) {
          expect(listed.has(old.serialNumber), `round ${round}: ${old.serialNumber} on the CRL`).toBe(true);
          expect(await codeOf(t.authoriser.authorize(old, ['manager'])), `round ${round}: ${old.serialNumber} refused`).toMatch(
            /^(CERT_UNTRUSTED|AUTH_FORBIDDEN)$/,
          );
        }
        expect((await renew()).subject).toContain('OU=swarm-worker'); // back to a worker certificate
        const node = (await t.store.get(KEYS.nodes.ref(id)))!.value;
        expect(node.superseded?.length ?? 0).toBeLessThanOrEqual(MAX_SUPERSEDED);
      }
      // The worker certificates it renewed from are no manager's, and the current one still works.
      expect((await t.authoriser.authorize(cert, ['worker'])).nodeId).toBe(id);
    },
    slow(120_000),
  );

  it(
    'a record holding 60 earlier manager certificates (written before the bound) is demoted: all 60 on the CRL, the list bounded',
    async () => {
      const admin = await t.authoriser.authorize(t.managerCert, ['manager', 'admin']);
      const joined = await t.caServer.join({ token: t.settings.joinTokens().manager, csr: freshCsr().csr }, '10.0.0.2');
      const ref = KEYS.nodes.ref(joined.nodeId);
      const entry = (await t.store.get(ref))!;
      const notAfter = t.clock.now() + HOUR;
      const earlier = Array.from({ length: 60 }, () => ({ serial: randomBytes(16).toString('hex').toUpperCase(), notAfter, role: 'manager' as const }));
      const legacy = { ...entry.value, superseded: earlier };
      expect(await t.store.commit({ compares: [{ key: ref.key, version: entry.version }], puts: [{ key: ref.key, value: legacy }], deletes: [] })).toBe(true);
      await expect(t.inventory.setRole(joined.nodeId, 'worker', admin)).resolves.toMatchObject({ role: 'worker' });
      await t.state.refresh();
      const listed = (await t.revocations.crl()).serials;
      for (const serial of [...earlier.map((c) => c.serial), new X509Certificate(joined.certificate).serialNumber])
        expect(listed.has(serial), serial).toBe(true);
      expect((await t.store.get(ref))!.value.superseded?.length ?? 0).toBeLessThanOrEqual(MAX_SUPERSEDED);
    },
    slow(60_000),
  );
});
