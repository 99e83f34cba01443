/**
 * The records the cluster store keeps (DESIGN §8), one TypeBox schema each:
 * the schema is the TypeScript type, and every read is checked against it.
 * Every value carries a schema version; a record written by another version
 * of muster is refused rather than guessed at.
 */
import Type from 'typebox';
import { StoredLabels as Labels } from '../core/labels.js';

/** The schema version written into every record. */
export const SCHEMA_VERSION = 2;

const Schema = Type.Literal(SCHEMA_VERSION);
const Millis = Type.Integer({ minimum: 0 });
const Role = Type.Union([Type.Literal('worker'), Type.Literal('manager')]);
/** The role a certificate names: a node role, an API user, or a node's service certificate. */
const CertRole = Type.Union([Role, Type.Literal('admin'), Type.Literal('service')]);

/** A secret sealed under the cluster data key (AES-256-GCM): nonce and ciphertext with its tag, base64. */
export const Sealed = Type.Object({ alg: Type.Literal('A256GCM'), iv: Type.String(), data: Type.String() });
export type Sealed = Type.Static<typeof Sealed>;

/** The data key wrapped to one manager's certificate key (pki/key-wrap.ts). */
export const WrappedKey = Type.Union([
  Type.Object({ alg: Type.Literal('ECDH-ES+A256GCM'), epk: Type.String(), iv: Type.String(), data: Type.String() }),
  Type.Object({ alg: Type.Literal('RSA-OAEP-256'), data: Type.String() }),
]);

/**
 * The current cluster data key (DESIGN §10), once per serving manager: each
 * copy wrapped to that manager's certificate key, next to that key (SPKI DER,
 * base64) so a re-key can wrap to every manager that stays. A re-key replaces
 * the key and the wraps in the transaction that re-seals every secret.
 */
export const DataKeyRecord = Type.Object({
  schema: Schema,
  /** The first 16 hex digits of the key's SHA-256: which key this is, never the key. */
  keyId: Type.String({ pattern: '^[0-9a-f]{16}$' }),
  /** Counts the re-keys. */
  generation: Type.Integer({ minimum: 1 }),
  changedAt: Millis,
  wraps: Type.Record(Type.String(), WrappedKey),
  /** The public key each wrap was made to (SPKI DER, base64), by node ID. */
  publicKeys: Type.Record(Type.String(), Type.String()),
});
export type DataKeyRecord = Type.Static<typeof DataKeyRecord>;

/** Cluster-wide settings. */
export const ClusterRecord = Type.Object({
  schema: Schema,
  clusterId: Type.String(),
  /** Lifetime of newly issued node certificates, in ms; read at signing time. */
  certExpiryMs: Millis,
  createdAt: Millis,
  /** How long after its certificate expired a node may still renew by proving it holds the key (default 30 days). */
  renewGraceMs: Type.Optional(Millis),
});
export type ClusterRecord = Type.Static<typeof ClusterRecord>;

/** An external CA the managers forward signing to (cfssl protocol). */
export const ExternalCaRecord = Type.Object({
  url: Type.String(),
  /** Root(s) to verify the CA's TLS certificate with; system roots when absent. */
  cacertPem: Type.Optional(Type.String()),
  /** The HMAC key for cfssl's authsign, sealed like the CA key. */
  authKey: Type.Optional(Sealed),
});
export type ExternalCaRecord = Type.Static<typeof ExternalCaRecord>;

/** The root CA: the bundle bytes exactly as served and hashed, and its sealed key or the external CAs that hold it. */
export const CaRecord = Type.Object({
  schema: Schema,
  rootPem: Type.String(),
  /** The PKCS#8 PEM key, sealed; absent when an external CA signs. */
  key: Type.Optional(Sealed),
  /** Set when the root key lives outside the cluster; tried in order. */
  external: Type.Optional(Type.Array(ExternalCaRecord)),
  /**
   * The CA that issues API-user certificates (issue 28): self-signed (the
   * anchor services trust to admit admins only), its key sealed like the
   * root's, and the same CA cross-certified by the current root (what API
   * users present with their certificate). Absent on clusters founded
   * before it and while an external CA holds the root key: API users are
   * then issued under the root itself.
   */
  admin: Type.Optional(Type.Object({ certPem: Type.String(), key: Sealed, crossSignedPem: Type.String() })),
  /** A root rotation under way (`muster ca --rotate`): the new root, its sealed key, and the new root cross-signed by the current one. */
  rotation: Type.Optional(
    Type.Object({
      rootPem: Type.String(),
      /** The new root's key, sealed; absent when external CAs hold it. */
      key: Type.Optional(Sealed),
      /** The external CAs that sign under the new root. */
      external: Type.Optional(Type.Array(ExternalCaRecord)),
      crossSignedPem: Type.String(),
      /** The admin CA cross-certified by the new root: its chain while the rotation runs, and after it. */
      adminCrossSignedPem: Type.Optional(Type.String()),
      startedAt: Millis,
    }),
  ),
  /**
   * Roots a rotation replaced, kept until every certificate they issued has
   * expired (`until`): a node that was down during the rotation still renews
   * with its old certificate, and learns the new root through the cross-signed one.
   * The key (sealed, when the managers held it) signs that root's CRL until then.
   */
  previous: Type.Optional(Type.Array(Type.Object({ rootPem: Type.String(), key: Type.Optional(Sealed), crossSignedPem: Type.String(), until: Millis }))),
});
export type CaRecord = Type.Static<typeof CaRecord>;

/**
 * One role's join token as the store keeps it: its SHA-256 (hex), which joins
 * are checked against, and the token sealed under the data key, for showing
 * it to admins. No store holds a join token in clear.
 */
export const StoredToken = Type.Object({ hash: Type.String({ pattern: '^[0-9a-f]{64}$' }), sealed: Sealed }, { additionalProperties: false });
export type StoredToken = Type.Static<typeof StoredToken>;

/** A token as stores written before sealing held it (in clear); a manager seals it when it starts. */
export const ClearToken = Type.String();

/** The current join tokens, one per role. */
export const TokensRecord = Type.Object({
  schema: Schema,
  worker: Type.Union([StoredToken, ClearToken]),
  manager: Type.Union([StoredToken, ClearToken]),
  rotatedAt: Type.Object({ worker: Millis, manager: Millis }),
});
export type TokensRecord = Type.Static<typeof TokensRecord>;

/** One node of the cluster. */
export const NodeRecord = Type.Object({
  schema: Schema,
  id: Type.String(),
  role: Role,
  hostname: Type.String(),
  labels: Labels,
  createdAt: Millis,
  lastSeenAt: Millis,
  /** Serial (upper-case hex) and NotAfter of the newest certificate issued to the node. */
  certSerial: Type.String(),
  certNotAfter: Millis,
  /** SHA-256 (hex) of that certificate's DER: the serial alone can be copied by whoever holds the issuing key (a removed manager holds a replaced root's). */
  certSha256: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
  /** The role that certificate carries; differs from `role` until the node renews after a promotion or demotion. */
  certRole: Role,
  /** SHA-256 (hex) of the root that signed that certificate: a root rotation counts nodes by it. */
  certRoot: Type.Optional(Type.String()),
  /** Where the node serves the API when it is a manager (host:port), as it reported. */
  managerAddr: Type.Optional(Type.String()),
  /** A manager on a managed store: where its etcd member is reached (its hosts go into its certificate). */
  storeMember: Type.Optional(Type.Object({ clientAddr: Type.String(), peerAddr: Type.String() })),
  removed: Type.Boolean(),
  removedAt: Type.Optional(Millis),
  /** The scoped join token the node joined with (its ID), when it was one. */
  joinToken: Type.Optional(Type.String()),
  /** SAN patterns the admins allow this node's service certificates to name (`muster node update --add-san`): exact names, `*.example.com`, IPs. */
  sanPatterns: Type.Optional(Type.Array(Type.String())),
  /** The newest certificate of each of the node's services, by service name: revoked with the node, shown as superseded once replaced. */
  services: Type.Optional(Type.Record(Type.String(), Type.Object({ serial: Type.String(), notAfter: Millis }))),
  /** Earlier certificates of the node that are still valid, the newest MAX_SUPERSEDED (pruned at each renewal; older ones go on the CRL): what `node rm --revoke-all` and a demotion put on the CRL. */
  superseded: Type.Optional(
    Type.Array(Type.Object({ serial: Type.String(), notAfter: Millis, role: Role, sha256: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })) })),
  ),
});
export type NodeRecord = Type.Static<typeof NodeRecord>;

/** Why a certificate was issued. */
export const IssueKind = Type.Union([Type.Literal('init'), Type.Literal('join'), Type.Literal('renew'), Type.Literal('user'), Type.Literal('service')]);
export type IssueKind = Type.Static<typeof IssueKind>;

/** One certificate the managers issued. */
export const CertificateRecord = Type.Object({
  schema: Schema,
  serial: Type.String(),
  /** The node ID (a service certificate: the node it was issued to), or the API user's name. */
  subject: Type.String(),
  role: CertRole,
  kind: IssueKind,
  /** A service certificate: its service's name on that node, and the names it carries. */
  service: Type.Optional(Type.String()),
  sans: Type.Optional(Type.Array(Type.String())),
  issuedAt: Millis,
  notBefore: Millis,
  notAfter: Millis,
  /** Set when an admin revoked it (API users: muster ca revoke-api-certificate). */
  revokedAt: Type.Optional(Millis),
});
export type CertificateRecord = Type.Static<typeof CertificateRecord>;

/** Which nodes hold the manager role: an index kept in the same transactions as the node records, so "is this the last manager?" is one compared read. */
export const ManagersRecord = Type.Object({ schema: Schema, ids: Type.Array(Type.String()) });
export type ManagersRecord = Type.Static<typeof ManagersRecord>;

/** A serving manager's registration: held while it lives (bound to an etcd lease), gone when it dies. */
export const ManagerRegistration = Type.Object({
  nodeId: Type.String(),
  /** Where nodes reach it (host:port). */
  addr: Type.String(),
  startedAt: Millis,
});
export type ManagerRegistration = Type.Static<typeof ManagerRegistration>;

/** An extra join token (`join-token create`): its role, limits and the labels it gives; only a hash of the token is kept. */
export const ScopedTokenRecord = Type.Object({
  schema: Schema,
  id: Type.String(),
  role: Role,
  /** SHA-256 of the whole token, hex. */
  secretHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  createdAt: Millis,
  /** Refused from this instant on; absent: never expires. */
  expiresAt: Type.Optional(Millis),
  /** Joins it was created for, and how many are left; absent: unlimited. */
  uses: Type.Optional(Type.Integer({ minimum: 1 })),
  usesLeft: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Labels every node that joins with it gets (they win over the node's own). */
  labels: Labels,
  /** Who created it (CN of the caller). */
  createdBy: Type.Optional(Type.String()),
  /** SHA-256 (hex) of the root it pins: a root rotation ends it. */
  rootDigest: Type.Optional(Type.String()),
  lastUsedAt: Type.Optional(Millis),
});
export type ScopedTokenRecord = Type.Static<typeof ScopedTokenRecord>;

/** Why a certificate was revoked (RFC 5280 §5.3.1 reason codes muster uses). */
export const RevocationReason = Type.Union([
  Type.Literal('keyCompromise'),
  Type.Literal('cessationOfOperation'),
  Type.Literal('privilegeWithdrawn'),
  Type.Literal('superseded'),
]);
export type RevocationReason = Type.Static<typeof RevocationReason>;

/** One entry of the denylist the CRL is signed from; deleted once the certificate has expired. */
export const RevokedRecord = Type.Object({
  schema: Schema,
  serial: Type.String(),
  /** The node ID or API user the certificate names. */
  subject: Type.String(),
  role: CertRole,
  notAfter: Millis,
  revokedAt: Millis,
  reason: RevocationReason,
});
export type RevokedRecord = Type.Static<typeof RevokedRecord>;

/**
 * The CRL's number and issue time: bumped in every transaction that changes
 * the denylist, and when the last CRL is due for renewal. `changedAt` is the
 * number of the last change of the list itself: nodes fetch again only then.
 */
export const CrlRecord = Type.Object({ schema: Schema, number: Type.Integer({ minimum: 0 }), thisUpdate: Millis, changedAt: Type.Integer({ minimum: 0 }) });
export type CrlRecord = Type.Static<typeof CrlRecord>;

/** The SAN patterns the admins allow for every node with a label (`muster node update --for-label KEY=VALUE --add-san PATTERN`), by `KEY=VALUE`. */
export const SanPolicyRecord = Type.Object({ schema: Schema, labels: Type.Record(Type.String(), Type.Array(Type.String())) });
export type SanPolicyRecord = Type.Static<typeof SanPolicyRecord>;

/**
 * Autolock (`muster update --autolock`): whether managers keep their data key
 * wrapped under an unlock key, and that key sealed under the data key (so any
 * unlocked manager can show it, and rewraps when it changes).
 */
export const AutolockRecord = Type.Object({
  schema: Schema,
  enabled: Type.Boolean(),
  /** The unlock key, sealed; absent while autolock is off. */
  unlockKey: Type.Optional(Sealed),
  /** Its public ID (see token/unlock-key.ts). */
  keyId: Type.Optional(Type.String()),
  changedAt: Millis,
});
export type AutolockRecord = Type.Static<typeof AutolockRecord>;
