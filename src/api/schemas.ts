/**
 * The wire contract (DESIGN §4): one TypeBox schema per request and response.
 * Each drives fastify's validation and serialisation, gives the TypeScript
 * type, and is what the client checks answers against.
 */
import Type from 'typebox';
import { ERROR_CATALOGUE, type ErrorCode } from '../core/errors.js';
import { Labels } from '../core/labels.js';
import { NODES_PAGE } from './pages.js';
import { MAX_SESSION_WAIT_S } from './routes.js';

/** Limits every request body is held to. */
export const LIMITS = {
  bodyBytes: 64 * 1024,
  hostname: 253,
  userName: 64,
} as const;

const Pem = Type.String({ minLength: 1, maxLength: 20_000 });
const Id = Type.String({ pattern: '^[0-9a-z]{25}$' });
const Role = Type.Union([Type.Literal('worker'), Type.Literal('manager')]);
const Time = Type.String({ format: 'date-time' });

/** Every error code, as a schema. */
const Code = Type.Union((Object.keys(ERROR_CATALOGUE) as ErrorCode[]).map((code) => Type.Literal(code)));

/** A manager's address as nodes dial it: host:port (brackets around IPv6). */
const ManagerAddr = Type.String({ minLength: 3, maxLength: 300, pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$' });

/** Where a node's etcd member is reached should it serve a managed store (client and peer host:port). */
const StoreMember = Type.Object({ clientAddr: ManagerAddr, peerAddr: ManagerAddr }, { additionalProperties: false });

/** The error body of every failure. */
export const ErrorBody = Type.Object({
  statusCode: Type.Integer(),
  code: Code,
  message: Type.String(),
  hint: Type.Optional(Type.String()),
});
export type ErrorBody = Type.Static<typeof ErrorBody>;

/** The error answers every route may give. */
export const ErrorResponses = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 429: ErrorBody, 503: ErrorBody } as const;

/** A yes/no query flag (`?force=1`, `?tokens=true`). */
const Flag = Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('true'), Type.Literal('0'), Type.Literal('false')]));

/** True for a set query flag. */
export function isYes(flag: '1' | 'true' | '0' | 'false' | undefined): boolean {
  return flag === '1' || flag === 'true';
}

/** POST /v1/join */
export const JoinRequest = Type.Object(
  {
    token: Type.String({ maxLength: 200 }),
    csr: Type.String({ maxLength: 32 * 1024 }),
    hostname: Type.Optional(Type.String({ minLength: 1, maxLength: LIMITS.hostname, pattern: '^[A-Za-z0-9._-]+$' })),
    labels: Type.Optional(Labels),
    /** Where the node will serve if it is or becomes a manager; its host goes into manager certificates. */
    managerAddr: Type.Optional(ManagerAddr),
    /** A manager joining a managed store: where its etcd member will be reached (client and peer host:port). */
    storeMember: Type.Optional(StoreMember),
  },
  { additionalProperties: false },
);
export type JoinRequest = Type.Static<typeof JoinRequest>;

/** POST /v1/join/preflight: is this token good here, and for which role? Asked before the node makes a key. */
export const JoinPreflightRequest = Type.Object({ token: Type.String({ maxLength: 200 }) }, { additionalProperties: false });
export type JoinPreflightRequest = Type.Static<typeof JoinPreflightRequest>;

/** Answer to the preflight. */
export const JoinPreflight = Type.Object({ role: Role });
export type JoinPreflight = Type.Static<typeof JoinPreflight>;

/** A certificate handed to a node or user, with the root it chains to. */
const Issued = {
  /** Leaf, then any intermediates, as PEM. */
  certificate: Pem,
  /** The root bundle, exact bytes. */
  rootCA: Pem,
  notAfter: Time,
};

/** How a new manager reaches the cluster's etcd (endpoints and, with TLS, the client credentials). */
export const EtcdAccess = Type.Object({
  endpoints: Type.Array(Type.String({ maxLength: 300 }), { minItems: 1, maxItems: 16 }),
  cacertPem: Type.Optional(Type.String({ maxLength: 64 * 1024 })),
  certPem: Type.Optional(Type.String({ maxLength: 64 * 1024 })),
  keyPem: Type.Optional(Type.String({ maxLength: 64 * 1024 })),
});
export type EtcdAccess = Type.Static<typeof EtcdAccess>;

/** How a new manager's own etcd member joins a managed store: the members it starts with, and the cluster's member token. */
export const ManagedAccess = Type.Object({
  initialCluster: Type.String({ maxLength: 16 * 1024 }),
  endpoints: Type.Array(Type.String({ maxLength: 300 }), { maxItems: 16 }),
  clusterToken: Type.String({ maxLength: 100 }),
});
export type ManagedAccess = Type.Static<typeof ManagedAccess>;

/**
 * What a node needs to serve as a manager: the store (an etcd the user runs,
 * or a member of the managed store) and the cluster data key (base64). Sent
 * only to managers.
 */
export const ManagerBundle = Type.Object({ etcd: Type.Optional(EtcdAccess), member: Type.Optional(ManagedAccess), dataKey: Type.String({ maxLength: 100 }) });
export type ManagerBundle = Type.Static<typeof ManagerBundle>;

/** Answer to a join or a renewal. */
export const NodeCertificateResponse = Type.Object({
  nodeId: Id,
  role: Role,
  clusterId: Id,
  ...Issued,
  /** Start of the renewal window (50% of the lifetime); the agent picks its moment inside 50–80%. */
  renewAfter: Time,
  /** The serving managers, the answering one first. */
  managers: Type.Array(ManagerAddr),
  /** For a manager on a shared store: how to serve. */
  manager: Type.Optional(ManagerBundle),
  /** During and after a root rotation: each new root cross-signed by the root before it, so a node takes a new root only on the word of one it holds. */
  crossSigned: Type.Optional(Type.String({ maxLength: 64 * 1024 })),
  /** A renewal: the new certificate speaks for the connection it was asked on from now, so the node keeps it (issue 31); absent from a manager that does not. */
  sameConnection: Type.Optional(Type.Boolean()),
});
export type NodeCertificateResponse = Type.Static<typeof NodeCertificateResponse>;

/** POST /v1/renew */
export const RenewRequest = Type.Object(
  {
    csr: Type.String({ maxLength: 32 * 1024 }),
    managerAddr: Type.Optional(ManagerAddr),
    /** Where this node's etcd member would run (its join's --etcd-* flags): used when a promotion makes it a manager of a managed store. */
    storeMember: Type.Optional(StoreMember),
  },
  { additionalProperties: false },
);
export type RenewRequest = Type.Static<typeof RenewRequest>;

/** A node as the API shows it. */
export const NodeView = Type.Object({
  id: Id,
  role: Role,
  hostname: Type.String(),
  labels: Labels,
  status: Type.Union([Type.Literal('ready'), Type.Literal('down'), Type.Literal('removed')]),
  /** Managers only: Leader, Reachable or Unreachable (docker node ls's MANAGER STATUS). */
  managerStatus: Type.Optional(Type.Union([Type.Literal('Leader'), Type.Literal('Reachable'), Type.Literal('Unreachable')])),
  managerAddr: Type.Optional(Type.String()),
  certRole: Role,
  certSerial: Type.String(),
  certNotAfter: Time,
  createdAt: Time,
  lastSeenAt: Time,
  removed: Type.Boolean(),
  /** The scoped join token the node joined with. */
  joinToken: Type.Optional(Type.String()),
  /** SAN patterns the admins allow this node's service certificates (besides its hostname and advertise address, and its labels' patterns). */
  sanPatterns: Type.Optional(Type.Array(Type.String())),
});
export type NodeView = Type.Static<typeof NodeView>;

/** Why a node should renew now. */
export const RenewReason = Type.Union([Type.Literal('role-change'), Type.Literal('cert-expiry'), Type.Literal('ca-rotation')]);
export type RenewReason = Type.Static<typeof RenewReason>;

/** The longest window a manager asks nodes to spread a renewal over (`renewSpread`); an agent reads a longer one as this. */
export const MAX_RENEW_SPREAD_MS = 300_000;

/** GET /v1/nodes/self?wait=N: a long poll, answered at once when the node must act, else when something changes or after N seconds (1 to MAX_SESSION_WAIT_S; more is refused, not cut). */
export const SelfQuery = Type.Object(
  { wait: Type.Optional(Type.String({ pattern: '^(?:[1-9]|[1-9][0-9]|1[01][0-9]|120)$' })) },
  { additionalProperties: false },
);
export type SelfQuery = Type.Static<typeof SelfQuery>;

/** GET /v1/nodes/self */
export const SelfResponse = Type.Object({
  node: NodeView,
  renewNow: Type.Boolean(),
  reason: Type.Optional(RenewReason),
  certExpiry: Type.String(),
  /** How long after expiry the node may still renew (proving it holds its key). */
  renewGrace: Type.String(),
  /** The serving managers, the answering one first. */
  managers: Type.Array(ManagerAddr),
  /** The roots nodes trust now (two while a root rotation runs); a node keeps it as its trust bundle. */
  rootCA: Type.Optional(Pem),
  /** Each new root cross-signed by the root before it (see NodeCertificateResponse). */
  crossSigned: Type.Optional(Type.String({ maxLength: 64 * 1024 })),
  /** The number of the newest CRL; a node fetches GET /v1/crl when it holds an older one. Absent when the cluster publishes none (external CA). */
  crlNumber: Type.Optional(Type.Integer({ minimum: 0 })),
  /** With a renewal asked of every node (cert-expiry, ca-rotation) on a busy manager: spread it over at least this long (at most 5m). */
  renewSpread: Type.Optional(Type.String({ maxLength: 32 })),
});
export type SelfResponse = Type.Static<typeof SelfResponse>;

/** GET /v1/nodes: one page in node-ID order; `next` is the `after` of the next page, absent on the last one. */
export const NodeList = Type.Object({ nodes: Type.Array(NodeView), next: Type.Optional(Type.String()) });
export type NodeList = Type.Static<typeof NodeList>;

export { NODES_PAGE };

export { MAX_SESSION_WAIT_S };

/**
 * GET /v1/nodes?limit=N&after=ID&all=1. Query values are strings (ajv does not
 * coerce here), so `limit` is 1 to 1000 (NODES_PAGE.max) spelled as digits.
 */
export const NodesQuery = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^(?:[1-9][0-9]{0,2}|1000)$' })),
    after: Type.Optional(Id),
    all: Flag,
  },
  { additionalProperties: false },
);
export type NodesQuery = Type.Static<typeof NodesQuery>;

/** Node ID in a route. */
export const NodeParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
export type NodeParams = Type.Static<typeof NodeParams>;

/** DELETE /v1/nodes/{id}?force=1: a misspelt flag (`revoke-all`) is refused, never ignored. */
export const RemoveQuery = Type.Object({ force: Flag, revokeAll: Flag }, { additionalProperties: false });
export type RemoveQuery = Type.Static<typeof RemoveQuery>;

/** A SAN pattern as admins write it: a DNS name, `*.name`, or an IP address (checked by the manager: SAN_INVALID). */
const SanText = Type.String({ minLength: 1, maxLength: 253 });

/** PATCH /v1/nodes/{id}: the SAN patterns this node's service certificates may name (added, then removed). */
export const NodePatch = Type.Object(
  {
    addSans: Type.Optional(Type.Array(SanText, { maxItems: 64 })),
    rmSans: Type.Optional(Type.Array(SanText, { maxItems: 64 })),
  },
  { additionalProperties: false },
);
export type NodePatch = Type.Static<typeof NodePatch>;

/** PATCH /v1/san-policy: the SAN patterns every node with the label `KEY=VALUE` may name. */
export const SanPolicyPatch = Type.Object(
  {
    label: Type.String({ minLength: 3, maxLength: 300, pattern: '^[^=]+=.*$' }),
    addSans: Type.Optional(Type.Array(SanText, { maxItems: 64 })),
    rmSans: Type.Optional(Type.Array(SanText, { maxItems: 64 })),
  },
  { additionalProperties: false },
);
export type SanPolicyPatch = Type.Static<typeof SanPolicyPatch>;

/** GET /v1/san-policy and the answer to PATCH: the patterns by label. */
export const SanPolicyView = Type.Object({ labels: Type.Array(Type.Object({ label: Type.String(), patterns: Type.Array(Type.String()) })) });
export type SanPolicyView = Type.Static<typeof SanPolicyView>;

/**
 * POST /v1/nodes/self/service-certificates: a certificate for one of the
 * calling node's services (dockerd, nginx), from a key the node made. The
 * managers decide everything but the key: the names must be the node's
 * hostname or advertise address or allowed by an admin (SAN_NOT_ALLOWED);
 * no names asks for the node's own.
 */
export const ServiceCertificateRequest = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64 }),
    csr: Type.String({ maxLength: 32 * 1024 }),
    sans: Type.Array(SanText, { maxItems: 32 }),
    /** A client certificate (clientAuth only); else a server's (serverAuth only). */
    client: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ServiceCertificateRequest = Type.Static<typeof ServiceCertificateRequest>;

/** Answer to POST /v1/nodes/self/service-certificates. */
export const ServiceCertificateResponse = Type.Object({
  name: Type.String(),
  serial: Type.String(),
  sans: Type.Array(Type.String()),
  ...Issued,
  /** The admin anchor (GET /v1/ca/admin): what a daemon's folder trusts, so that only API users are admitted (absent when an external CA holds the root key). */
  adminAnchor: Type.Optional(Type.String()),
});
export type ServiceCertificateResponse = Type.Static<typeof ServiceCertificateResponse>;

/** Token status (the token itself only on request). */
const TokenInfo = Type.Object({ rotatedAt: Time, token: Type.Optional(Type.String()) });

/** GET /v1/cluster */
export const ClusterView = Type.Object({
  clusterId: Id,
  createdAt: Time,
  certExpiry: Type.String(),
  certExpiryMs: Type.Integer(),
  renewGrace: Type.String(),
  /** The answering manager's address. */
  advertiseAddr: Type.String(),
  /** Where the cluster state lives (level or etcd endpoints). */
  store: Type.String(),
  ca: Type.Object({
    digest: Type.String(),
    subject: Type.String(),
    notAfter: Time,
    external: Type.Boolean(),
    externalUrls: Type.Array(Type.String()),
    /** With an external CA: the lifetime of the last certificate it gave this manager, which is what its profile issues. */
    externalLifetime: Type.Optional(Type.String()),
  }),
  joinTokens: Type.Object({ worker: TokenInfo, manager: TokenInfo }),
  /** Managers keep their keys encrypted under an unlock key at rest. */
  autolock: Type.Boolean(),
  /** Only in the answer to the update that turned autolock on: the unlock key. */
  unlockKey: Type.Optional(Type.String()),
});
export type ClusterView = Type.Static<typeof ClusterView>;

/** GET /v1/cluster?tokens=1 */
export const ClusterQuery = Type.Object({ tokens: Flag }, { additionalProperties: false });
export type ClusterQuery = Type.Static<typeof ClusterQuery>;

/** An external CA in a PATCH: cfssl URL, the PEM to verify its TLS with, and its authsign key (hex). */
export const ExternalCa = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 2048, pattern: '^https?://' }),
    cacertPem: Type.Optional(Type.String({ maxLength: 64 * 1024 })),
    authKeyHex: Type.Optional(Type.String({ pattern: '^(?:[0-9a-f]{2}){16,128}$' })),
  },
  { additionalProperties: false },
);
export type ExternalCa = Type.Static<typeof ExternalCa>;

/** PATCH /v1/cluster */
export const ClusterPatch = Type.Object(
  {
    certExpiry: Type.Optional(Type.String({ maxLength: 32 })),
    externalCAs: Type.Optional(Type.Array(ExternalCa, { maxItems: 8 })),
    autolock: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ClusterPatch = Type.Static<typeof ClusterPatch>;

/** GET /v1/unlock-key and the rotate answer: the key a locked manager is unlocked with. */
export const UnlockKeyView = Type.Object({ unlockKey: Type.String(), keyId: Type.String() });
export type UnlockKeyView = Type.Static<typeof UnlockKeyView>;

/** POST /v1/unlock (the manager's local socket only). */
export const UnlockRequest = Type.Object({ unlockKey: Type.String({ maxLength: 128 }) }, { additionalProperties: false });
export type UnlockRequest = Type.Static<typeof UnlockRequest>;

/**
 * POST /v1/store/backup (the manager's local socket only): the backup file
 * (its format is the store's, checked by the CLI before it is written), and
 * the backup key made for it when autolock is off (shown once, kept nowhere).
 */
export const BackupResponse = Type.Object({ backup: Type.Unknown(), backupKey: Type.Optional(Type.String()) });
export type BackupResponse = Type.Static<typeof BackupResponse>;

/** POST /v1/store/backup: wrap under this backup key (scheduled backups, one key for all) instead of a fresh one. */
export const BackupRequest = Type.Object({ backupKey: Type.Optional(Type.String({ maxLength: 128 })) }, { additionalProperties: false });
export type BackupRequest = Type.Static<typeof BackupRequest>;

/** The answer to an accepted unlock. */
export const UnlockResult = Type.Object({ unlocked: Type.Boolean() });
export type UnlockResult = Type.Static<typeof UnlockResult>;

/** GET /v1/join-tokens and the rotate answer. */
export const JoinTokens = Type.Object({ worker: Type.String(), manager: Type.String(), managerAddr: Type.String() });
export type JoinTokens = Type.Static<typeof JoinTokens>;

/** POST /v1/join-tokens/{role}/rotate */
export const RotateParams = Type.Object({ role: Role });
export type RotateParams = Type.Static<typeof RotateParams>;

/** POST /v1/join-tokens/scoped: an extra token with a lifetime, a use count and labels. */
export const ScopedTokenRequest = Type.Object(
  {
    role: Role,
    /** Lifetime (`30m`, `24h`, `7d`); never expires when absent. */
    ttl: Type.Optional(Type.String({ maxLength: 32 })),
    /** Joins it admits; unlimited when absent. */
    uses: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    labels: Type.Optional(Labels),
  },
  { additionalProperties: false },
);
export type ScopedTokenRequest = Type.Static<typeof ScopedTokenRequest>;

/** A scoped token as `join-token ls` shows it: never its secret. */
export const ScopedTokenView = Type.Object({
  id: Type.String(),
  role: Role,
  createdAt: Type.String(),
  expiresAt: Type.Optional(Type.String()),
  uses: Type.Optional(Type.Integer()),
  usesLeft: Type.Optional(Type.Integer()),
  labels: Labels,
  status: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('used')]),
  createdBy: Type.Optional(Type.String()),
});
export type ScopedTokenView = Type.Static<typeof ScopedTokenView>;

/** Answer to POST /v1/join-tokens/scoped: the only time the token itself is shown. */
export const ScopedTokenCreated = Type.Object({ ...ScopedTokenView.properties, token: Type.String(), managerAddr: Type.String() });
export type ScopedTokenCreated = Type.Static<typeof ScopedTokenCreated>;

/** GET /v1/join-tokens/scoped */
export const ScopedTokenList = Type.Object({ tokens: Type.Array(ScopedTokenView) });
export type ScopedTokenList = Type.Static<typeof ScopedTokenList>;

/** DELETE /v1/join-tokens/scoped/{id} */
export const ScopedTokenParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
export type ScopedTokenParams = Type.Static<typeof ScopedTokenParams>;

/** One issued certificate, as GET /v1/certificates exports it. */
export const CertificateView = Type.Object({
  serial: Type.String(),
  subject: Type.String(),
  role: Type.Union([Role, Type.Literal('admin'), Type.Literal('service')]),
  kind: Type.String(),
  /** A service certificate: the service's name on the node (`subject`), and the names it carries. */
  service: Type.Optional(Type.String()),
  sans: Type.Optional(Type.Array(Type.String())),
  issuedAt: Type.String(),
  notBefore: Type.String(),
  notAfter: Type.String(),
  status: Type.Union([Type.Literal('valid'), Type.Literal('superseded'), Type.Literal('revoked'), Type.Literal('expired')]),
});
export type CertificateView = Type.Static<typeof CertificateView>;

/** GET /v1/certificates */
export const CertificateList = Type.Object({ certificates: Type.Array(CertificateView), next: Type.Optional(Type.String()) });
export type CertificateList = Type.Static<typeof CertificateList>;

/** Query of GET /v1/certificates: pages in serial order. */
export const CertificatesQuery = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$' })),
    after: Type.Optional(Type.String({ maxLength: 64, pattern: '^[0-9A-F]*$' })),
  },
  { additionalProperties: false },
);
export type CertificatesQuery = Type.Static<typeof CertificatesQuery>;

/** POST /v1/ca/rotate: a new root given with its key, or none (a new one is founded). */
export const RotationRequest = Type.Object(
  {
    caCertPem: Type.Optional(Type.String({ minLength: 1, maxLength: 20_000 })),
    caKeyPem: Type.Optional(Type.String({ minLength: 1, maxLength: 20_000 })),
    /** External CAs that hold the new root's key (with caCertPem, without caKeyPem). */
    externalCAs: Type.Optional(Type.Array(ExternalCa, { minItems: 1, maxItems: 8 })),
    certExpiry: Type.Optional(Type.String({ maxLength: 32 })),
  },
  { additionalProperties: false },
);
export type RotationRequest = Type.Static<typeof RotationRequest>;

/** GET /v1/ca/rotation and the answer to POST: where a root rotation stands. */
export const RotationStatus = Type.Object({
  rotating: Type.Boolean(),
  /** SHA-256 (hex) of the root /v1/ca serves (the old one while rotating). */
  rootDigest: Type.String(),
  targetDigest: Type.Optional(Type.String()),
  startedAt: Type.Optional(Type.String()),
  /** Nodes that are up, and how many of them hold a certificate under the root that signs now. */
  nodes: Type.Object({ total: Type.Integer(), rotated: Type.Integer() }),
  /** Once a rotation completed: until when the roots it replaced stay trusted (certificates under them work until then, API users' made before it among them). */
  oldRootUntil: Type.Optional(Type.String()),
});
export type RotationStatus = Type.Static<typeof RotationStatus>;

/** POST /v1/users */
export const UserRequest = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: LIMITS.userName, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$' }),
    csr: Type.String({ maxLength: 32 * 1024 }),
    /** Lifetime of the certificate (at least 5m); the cluster's certificate expiry when absent. */
    expiry: Type.Optional(Type.String({ maxLength: 32 })),
  },
  { additionalProperties: false },
);
export type UserRequest = Type.Static<typeof UserRequest>;

/** POST /v1/users/renew: an API user's new key, as a CSR; the name and lifetime come from the certificate presented. */
export const UserRenewRequest = Type.Object({ csr: Type.String({ maxLength: 32 * 1024 }) }, { additionalProperties: false });
export type UserRenewRequest = Type.Static<typeof UserRenewRequest>;

/** Answer to POST /v1/users and POST /v1/users/renew. */
export const UserResponse = Type.Object({ name: Type.String(), clusterId: Id, ...Issued });
export type UserResponse = Type.Static<typeof UserResponse>;

/** GET /v1/crl/{issuer}: the key identifier (hex) of the root whose CRL is asked for, as each certificate's distribution point names it. */
export const CrlParams = Type.Object({ issuer: Type.String({ pattern: '^[0-9A-Fa-f]{2,128}$' }) });
export type CrlParams = Type.Static<typeof CrlParams>;

/** DELETE /v1/users/{name} */
export const UserParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: LIMITS.userName }) });
export type UserParams = Type.Static<typeof UserParams>;

/** Answer to DELETE /v1/users/{name}. */
export const UserRevoked = Type.Object({ name: Type.String(), revoked: Type.Integer(), serials: Type.Array(Type.String()) });
export type UserRevoked = Type.Static<typeof UserRevoked>;

/** GET /healthz: whether this manager serves, and whether its store answers. No secrets. */
export const Health = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('locked')]),
  role: Type.Literal('manager'),
  store: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  /** A locked manager (autolock): serves only /v1/ca and /healthz until 'muster unlock'. */
  locked: Type.Optional(Type.Boolean()),
  /** Wrong unlock keys offered since it started locked. */
  unlockFailures: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type Health = Type.Static<typeof Health>;
