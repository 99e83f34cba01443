/**
 * The admin CA (issue 28): the CA that issues API-user certificates, and
 * nothing else. Services that check only a chain (dockerd, nginx) are given
 * its self-signed certificate as their anchor: API users' certificates chain
 * to it, node certificates (issued by the root) do not. The root
 * cross-certifies it, so an API user's chain (leaf, then the admin CA under
 * the root) still leads to the cluster root for anyone who trusts that.
 *
 * Its key is sealed under the data key like the root's, and re-sealed with
 * it. A root rotation keeps the admin CA, key and anchor, and has the new
 * root cross-certify it (root-rotation.ts): services keep their anchor file
 * through a rotation, and API users' chains move to the new root when they
 * renew. Clusters founded before it get one the first time it is needed
 * ({@link AdminCa.ensure}); while an external CA holds the root key there is
 * none (cross-certifying needs the root key), and API users are issued under
 * the root as before.
 */
import type { Clock } from '../../core/clock.js';
import { MusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Random } from '../../core/random.js';
import { createAdminCa, crossSignRoot, loadSigningCa, rootIdentity, type SigningCa } from '../../pki/ca.js';
import { seal, unseal } from '../../pki/seal.js';
import { KEYS, transact, type ClusterStore } from '../../store/cluster-store.js';
import type { CaRecord } from '../../store/records.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { DataKeyRing } from '../state/data-key.js';
import { SEAL_CONTEXT, currentSigningCa } from '../state/signer.js';

/** The admin CA as the CA record keeps it. */
export type AdminCaRecord = NonNullable<CaRecord['admin']>;

/** The admin CA cross-certified by `root` (pathlen 0: it issues leaves only). */
export function crossCertifyAdminCa(admin: Pick<AdminCaRecord, 'certPem'>, root: SigningCa, random: Random): string {
  return crossSignRoot({ next: rootIdentity(admin.certPem), by: root, random, pathLen: 0 });
}

/** Founds an admin CA under `root`: a new key, sealed under the data key. */
export function newAdminCa(params: { root: SigningCa; clusterId: string; dataKey: Buffer; clock: Clock; random: Random }): AdminCaRecord {
  const material = createAdminCa({ clusterId: params.clusterId, clock: params.clock, random: params.random });
  return {
    certPem: material.certPem,
    key: seal(params.dataKey, material.keyPem, SEAL_CONTEXT.adminKey),
    crossSignedPem: crossCertifyAdminCa(material, params.root, params.random),
  };
}

/** Whether a CA record lacks part of the admin CA that its managers could make (they hold the root key). */
function incomplete(ca: CaRecord): boolean {
  if (ca.key === undefined) return false;
  return ca.admin === undefined || (ca.rotation?.key !== undefined && ca.rotation.adminCrossSignedPem === undefined);
}

/** Keeps the cluster's admin CA and serves its anchor. */
export class AdminCa {
  constructor(private readonly deps: { state: ClusterState; store: ClusterStore; dataKeys: DataKeyRing; clock: Clock; random: Random; logger: Logger }) {}

  /**
   * Founds the admin CA of a cluster that has none (founded before it), and
   * has a rotation's new root cross-certify it; nothing when the record is
   * complete or an external CA holds the root key. Safe on every manager at
   * once: one transaction wins, the others find the record complete.
   */
  async ensure(): Promise<void> {
    const { state, store, dataKeys, clock, random, logger } = this.deps;
    if (!incomplete(state.ca)) return;
    const wrote = await transact(store, async (tx) => {
      const ca = await tx.get(KEYS.ca);
      if (ca === undefined) throw new MusterError('STATE_CORRUPT', 'the store holds no CA');
      if (!incomplete(ca)) return false;
      const dataKey = await dataKeys.keyFor(tx);
      const root = currentSigningCa(ca, dataKey);
      if (root === undefined) return false;
      const admin = ca.admin ?? newAdminCa({ root, clusterId: state.clusterId, dataKey, clock, random });
      let rotation = ca.rotation;
      if (rotation?.key !== undefined && rotation.adminCrossSignedPem === undefined) {
        const next = loadSigningCa({ certPem: rotation.rootPem, keyPem: unseal(dataKey, rotation.key, SEAL_CONTEXT.caKey).toString('utf8') });
        rotation = { ...rotation, adminCrossSignedPem: crossCertifyAdminCa(admin, next, random) };
      }
      tx.put(KEYS.ca, { ...ca, admin, ...(rotation === undefined ? {} : { rotation }) });
      return true;
    });
    if (!wrote) return;
    await state.refresh();
    logger.info({}, 'the admin CA that issues API-user certificates is in place');
  }

  /** The anchor services trust to admit API users only: the admin CA's self-signed certificate (PEM). */
  async anchor(): Promise<string> {
    await this.ensure();
    const admin = this.deps.state.ca.admin;
    if (admin === undefined) throw new MusterError('ADMIN_CA_UNAVAILABLE');
    return admin.certPem;
  }
}
