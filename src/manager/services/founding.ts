/**
 * Founding a cluster (`muster init`): a cluster ID, the root (founded here,
 * or brought with its key, or brought without it for external CAs), both
 * join tokens, and the first manager's record and certificate, committed in
 * one transaction that requires the store to hold no cluster yet.
 */
import { parseHostPort } from '../../core/address.js';
import type { Clock } from '../../core/clock.js';
import { MusterError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Random } from '../../core/random.js';
import { createRootCa, loadSigningCa, rootDigest } from '../../pki/ca.js';
import { parseCsr } from '../../pki/csr.js';
import type { IssuedCertificate } from '../../pki/issue.js';
import { seal } from '../../pki/seal.js';
import { generateJoinToken } from '../../token/join-token.js';
import { KEYS, transact, type ClusterStore } from '../../store/cluster-store.js';
import { SCHEMA_VERSION, type CaRecord, type ExternalCaRecord, type NodeRecord } from '../../store/records.js';
import { API } from '../../api/routes.js';
import { autolockRecord } from './autolock.js';
import { certificateRecord } from './ca-server.js';
import { SEAL_CONTEXT, createSigner } from '../state/signer.js';
import type { Signer } from '../state/signing.js';
import { storeTokens } from '../state/stored-tokens.js';
import { dataKeyRecord } from '../state/data-key.js';
import { newAdminCa } from './admin-ca.js';
import { certificateSha256 } from '../../pki/certificate.js';

/** An external CA as `init --external-ca` gives it (the auth key still in clear, sealed here). */
export interface ExternalCaSpec {
  url: string;
  cacertPem?: string;
  authKeyHex?: string;
}

/** What founding needs. */
export interface FoundParams {
  store: ClusterStore;
  /** The new cluster's ID (the etcd key prefix is made from it before founding); a fresh one when absent. */
  clusterId?: string;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** The cluster data key the CA key is sealed under. */
  dataKey: Buffer;
  certExpiryMs: number;
  /** An existing root; a P-256 root is founded when absent. Without a key, `externalCAs` sign. */
  root?: { certPem: string; keyPem?: string };
  externalCAs?: ExternalCaSpec[];
  /** The first manager's CSR (its key stays in its data dir). */
  csrPem: string;
  hostname: string;
  /** Where the first manager serves (host:port); its host goes into its certificate. */
  managerAddr: string;
  /** More hosts the first manager's certificate names (a managed store: its etcd member's, and loopback). */
  extraHosts?: string[];
  /**
   * Runs after the first certificate is issued and before the store commits
   * (the caller writes the key pair and node.json here). A crash before the
   * commit leaves a store without a cluster, which init may then redo.
   */
  beforeCommit?: (founded: Founded) => Promise<void>;
  /** `init --autolock`: the unlock key the managers' files are wrapped under from the start. */
  unlockKey?: Buffer;
}

/** A founded cluster. */
export interface Founded {
  clusterId: string;
  nodeId: string;
  certificate: IssuedCertificate;
  rootPem: string;
}

/** Founds a cluster in an empty store. */
/** The certificate of the manager that founds a cluster (or a restored one), from `signer`, which is closed after. */
export async function issueFounderCertificate(
  signer: Signer,
  p: { csrPem: string; nodeId: string; clusterId: string; managerAddr: string; extraHosts?: readonly string[]; validityMs: number },
): Promise<IssuedCertificate> {
  try {
    return await signer.issue({
      csrPem: p.csrPem,
      csr: parseCsr(p.csrPem),
      role: 'manager',
      commonName: p.nodeId,
      clusterId: p.clusterId,
      hosts: [...new Set([parseHostPort(p.managerAddr).host, ...(p.extraHosts ?? [])])],
      validityMs: p.validityMs,
      crlUrl: `https://${p.managerAddr}${API.crl.path}`,
    });
  } finally {
    await signer.close();
  }
}

/** The node record of the manager that founds a cluster (or a restored one, backup.ts): its certificate pinned by serial and SHA-256. */
export function founderRecord(
  nodeId: string,
  where: { hostname: string; managerAddr: string },
  certificate: IssuedCertificate,
  rootDigestHex: string,
  now: number,
): NodeRecord {
  return {
    schema: SCHEMA_VERSION,
    id: nodeId,
    role: 'manager',
    hostname: where.hostname,
    labels: {},
    createdAt: now,
    lastSeenAt: now,
    certSerial: certificate.serial,
    certNotAfter: certificate.notAfter,
    certSha256: certificateSha256(certificate.certPem),
    certRole: 'manager',
    certRoot: rootDigestHex,
    managerAddr: where.managerAddr,
    removed: false,
  };
}

export async function foundCluster(params: FoundParams): Promise<Founded> {
  const { store, clock, random, dataKey } = params;
  if ((await store.get(KEYS.cluster)) !== undefined) throw new MusterError('CLUSTER_EXISTS');
  const clusterId = params.clusterId ?? newId(random);
  const root = params.root ?? createRootCa({ clusterId, clock, random });
  const ca: CaRecord = { schema: SCHEMA_VERSION, rootPem: root.certPem };
  if (root.keyPem !== undefined) {
    ca.key = seal(dataKey, root.keyPem, SEAL_CONTEXT.caKey);
    // API users are issued by a CA of their own under the root, from the start (admin-ca.ts).
    ca.admin = newAdminCa({ root: loadSigningCa({ certPem: root.certPem, keyPem: root.keyPem }), clusterId, dataKey, clock, random });
  } else {
    ca.external = (params.externalCAs ?? []).map(
      (spec): ExternalCaRecord => ({
        url: spec.url,
        ...(spec.cacertPem === undefined ? {} : { cacertPem: spec.cacertPem }),
        ...(spec.authKeyHex === undefined ? {} : { authKey: seal(dataKey, spec.authKeyHex, SEAL_CONTEXT.authKey) }),
      }),
    );
  }
  const signer = createSigner(ca, { clock, random, logger: params.logger, dataKey });
  const nodeId = newId(random);
  const certificate = await issueFounderCertificate(signer, {
    csrPem: params.csrPem,
    nodeId,
    clusterId,
    managerAddr: params.managerAddr,
    ...(params.extraHosts === undefined ? {} : { extraHosts: params.extraHosts }),
    validityMs: params.certExpiryMs,
  });
  const founded: Founded = { clusterId, nodeId, certificate, rootPem: root.certPem };
  await params.beforeCommit?.(founded);
  const digest = rootDigest(root.certPem);
  const now = clock.now();
  await transact(store, async (tx) => {
    if ((await tx.get(KEYS.cluster)) !== undefined) throw new MusterError('CLUSTER_EXISTS');
    tx.put(KEYS.ca, ca);
    tx.put(KEYS.tokens, {
      schema: SCHEMA_VERSION,
      ...storeTokens(dataKey, { worker: generateJoinToken(digest, random), manager: generateJoinToken(digest, random) }),
      rotatedAt: { worker: now, manager: now },
    });
    tx.put(KEYS.managers, { schema: SCHEMA_VERSION, ids: [nodeId] });
    tx.put(KEYS.dataKey, dataKeyRecord(dataKey, { nodeId, certPem: certificate.certPem }, now));
    if (params.unlockKey !== undefined) tx.put(KEYS.autolock, autolockRecord(params.dataKey, params.unlockKey, now));
    tx.put(KEYS.nodes.ref(nodeId), founderRecord(nodeId, params, certificate, digest.toString('hex'), now));
    tx.put(KEYS.certificates.ref(certificate.serial), certificateRecord(nodeId, 'manager', 'init', now, certificate));
    tx.put(KEYS.cluster, { schema: SCHEMA_VERSION, clusterId, certExpiryMs: params.certExpiryMs, createdAt: now });
  });
  return founded;
}
