/**
 * The records the cluster store keeps (DESIGN §8). Every value carries a
 * schema version so a later muster can migrate what an earlier one wrote.
 */
import type { NodeRole } from '../core/roles.js';

/** The schema version written into every record. */
export const SCHEMA_VERSION = 1;

/** Cluster-wide settings. */
export interface ClusterRecord {
  schema: number;
  clusterId: string;
  /** Lifetime of newly issued node certificates, in ms; read at signing time. */
  certExpiryMs: number;
  createdAt: number;
  /** The address nodes are told to reach the first manager on (host:port). */
  advertiseAddr: string;
}

/** An external CA the manager forwards signing to (cfssl protocol). */
export interface ExternalCaRecord {
  url: string;
  /** Root(s) to verify the CA's TLS certificate with; system roots when absent. */
  cacertPem?: string;
  /** HMAC-SHA256 key for /api/v1/cfssl/authsign, hex. A secret, like the CA key. */
  authKeyHex?: string;
}

/** The root CA: the bundle bytes exactly as served and hashed, and its key or the external CAs that hold it. */
export interface CaRecord {
  schema: number;
  rootPem: string;
  /** PKCS#8 PEM; never leaves the manager, never printed. Absent when an external CA signs. */
  keyPem?: string;
  /** Set when the root key lives outside the cluster; tried in order. */
  external?: ExternalCaRecord[];
}

/** The current join tokens, one per role. */
export interface TokensRecord {
  schema: number;
  worker: string;
  manager: string;
  rotatedAt: Record<NodeRole, number>;
}

/** One node of the cluster. */
export interface NodeRecord {
  schema: number;
  id: string;
  role: NodeRole;
  hostname: string;
  labels: Record<string, string>;
  createdAt: number;
  lastSeenAt: number;
  /** Serial (upper-case hex) and NotAfter of the newest certificate issued to the node. */
  certSerial: string;
  certNotAfter: number;
  /** The role that certificate carries; differs from `role` until the node renews after a promotion or demotion. */
  certRole: NodeRole;
  removed: boolean;
  removedAt?: number;
}

/** Why a certificate was issued. */
export type IssueKind = 'init' | 'join' | 'renew' | 'user';

/** One certificate the manager issued. */
export interface CertificateRecord {
  schema: number;
  serial: string;
  /** The node ID, or the API user's name. */
  subject: string;
  role: NodeRole | 'admin';
  kind: IssueKind;
  issuedAt: number;
  notBefore: number;
  notAfter: number;
  /** Set when an admin revoked it (API users: muster ca revoke-api-certificate). */
  revokedAt?: number;
}
