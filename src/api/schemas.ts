/**
 * The wire contract (DESIGN §4): one TypeBox schema per request and response.
 * Each drives fastify's validation and serialisation, gives the TypeScript
 * type, and is what the client checks answers against.
 */
import Type from 'typebox';

/** Limits every request body is held to. */
export const LIMITS = {
  bodyBytes: 64 * 1024,
  hostname: 253,
  labels: 32,
  labelKey: 63,
  labelValue: 253,
  userName: 64,
} as const;

const Pem = Type.String({ minLength: 1, maxLength: 20_000 });
const Id = Type.String({ pattern: '^[0-9a-z]{25}$' });
const Role = Type.Union([Type.Literal('worker'), Type.Literal('manager')]);
const Time = Type.String({ format: 'date-time' });

/** The error body of every failure. */
export const ErrorBody = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  message: Type.String(),
  hint: Type.Optional(Type.String()),
});
export type ErrorBody = Type.Static<typeof ErrorBody>;

/** POST /v1/join */
export const JoinRequest = Type.Object(
  {
    token: Type.String({ maxLength: 200 }),
    csr: Type.String({ maxLength: 32 * 1024 }),
    hostname: Type.Optional(Type.String({ minLength: 1, maxLength: LIMITS.hostname, pattern: '^[A-Za-z0-9._-]+$' })),
    labels: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z0-9._/-]{1,63}$' }), Type.String({ maxLength: LIMITS.labelValue }), { maxProperties: LIMITS.labels }),
    ),
  },
  { additionalProperties: false },
);
export type JoinRequest = Type.Static<typeof JoinRequest>;

/** A certificate handed to a node or user, with the root it chains to. */
const Issued = {
  /** Leaf, then any intermediates, as PEM. */
  certificate: Pem,
  /** The root bundle, exact bytes. */
  rootCA: Pem,
  notAfter: Time,
};

/** Answer to a join or a renewal. */
export const NodeCertificateResponse = Type.Object({
  nodeId: Id,
  role: Role,
  clusterId: Id,
  ...Issued,
  /** Start of the renewal window (50% of the lifetime); the agent picks its moment inside 50–80%. */
  renewAfter: Time,
});
export type NodeCertificateResponse = Type.Static<typeof NodeCertificateResponse>;

/** POST /v1/renew */
export const RenewRequest = Type.Object({ csr: Type.String({ maxLength: 32 * 1024 }) }, { additionalProperties: false });
export type RenewRequest = Type.Static<typeof RenewRequest>;

/** A node as the API shows it. */
export const NodeView = Type.Object({
  id: Id,
  role: Role,
  hostname: Type.String(),
  labels: Type.Record(Type.String(), Type.String()),
  status: Type.Union([Type.Literal('ready'), Type.Literal('down'), Type.Literal('removed')]),
  certRole: Role,
  certSerial: Type.String(),
  certNotAfter: Time,
  createdAt: Time,
  lastSeenAt: Time,
  removed: Type.Boolean(),
});
export type NodeView = Type.Static<typeof NodeView>;

/** Why a node should renew now. */
export const RenewReason = Type.Union([Type.Literal('role-change'), Type.Literal('cert-expiry'), Type.Literal('ca-rotation')]);
export type RenewReason = Type.Static<typeof RenewReason>;

/** GET /v1/nodes/self */
export const SelfResponse = Type.Object({
  node: NodeView,
  renewNow: Type.Boolean(),
  reason: Type.Optional(RenewReason),
  certExpiry: Type.String(),
});
export type SelfResponse = Type.Static<typeof SelfResponse>;

/** GET /v1/nodes */
export const NodeList = Type.Object({ nodes: Type.Array(NodeView) });
export type NodeList = Type.Static<typeof NodeList>;

/** Node ID in a route. */
export const NodeParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
export type NodeParams = Type.Static<typeof NodeParams>;

/** DELETE /v1/nodes/{id}?force=1 */
export const RemoveQuery = Type.Object({ force: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('true'), Type.Literal('0'), Type.Literal('false')])) });
export type RemoveQuery = Type.Static<typeof RemoveQuery>;

/** Token status (the token itself only on request). */
const TokenInfo = Type.Object({ rotatedAt: Time, token: Type.Optional(Type.String()) });

/** GET /v1/cluster */
export const ClusterView = Type.Object({
  clusterId: Id,
  createdAt: Time,
  certExpiry: Type.String(),
  certExpiryMs: Type.Integer(),
  advertiseAddr: Type.String(),
  ca: Type.Object({ digest: Type.String(), subject: Type.String(), notAfter: Time, external: Type.Boolean(), externalUrls: Type.Array(Type.String()) }),
  joinTokens: Type.Object({ worker: TokenInfo, manager: TokenInfo }),
});
export type ClusterView = Type.Static<typeof ClusterView>;

/** GET /v1/cluster?tokens=1 */
export const ClusterQuery = Type.Object({ tokens: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('true'), Type.Literal('0'), Type.Literal('false')])) });
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
  { certExpiry: Type.Optional(Type.String({ maxLength: 32 })), externalCAs: Type.Optional(Type.Array(ExternalCa, { maxItems: 8 })) },
  { additionalProperties: false },
);
export type ClusterPatch = Type.Static<typeof ClusterPatch>;

/** GET /v1/join-tokens and the rotate answer. */
export const JoinTokens = Type.Object({ worker: Type.String(), manager: Type.String(), managerAddr: Type.String() });
export type JoinTokens = Type.Static<typeof JoinTokens>;

/** POST /v1/join-tokens/{role}/rotate */
export const RotateParams = Type.Object({ role: Role });
export type RotateParams = Type.Static<typeof RotateParams>;

/** POST /v1/users */
export const UserRequest = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: LIMITS.userName, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$' }),
    csr: Type.String({ maxLength: 32 * 1024 }),
  },
  { additionalProperties: false },
);
export type UserRequest = Type.Static<typeof UserRequest>;

/** Answer to POST /v1/users. */
export const UserResponse = Type.Object({ name: Type.String(), clusterId: Id, ...Issued });
export type UserResponse = Type.Static<typeof UserResponse>;

/** DELETE /v1/users/{name} */
export const UserParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: LIMITS.userName }) });
export type UserParams = Type.Static<typeof UserParams>;

/** Answer to DELETE /v1/users/{name}. */
export const UserRevoked = Type.Object({ name: Type.String(), revoked: Type.Integer(), serials: Type.Array(Type.String()) });
export type UserRevoked = Type.Static<typeof UserRevoked>;

/** Route paths, written once. */
export const ROUTES = {
  ca: '/v1/ca',
  join: '/v1/join',
  renew: '/v1/renew',
  self: '/v1/nodes/self',
  cluster: '/v1/cluster',
  joinTokens: '/v1/join-tokens',
  rotate: '/v1/join-tokens/:role/rotate',
  nodes: '/v1/nodes',
  node: '/v1/nodes/:id',
  promote: '/v1/nodes/:id/promote',
  demote: '/v1/nodes/:id/demote',
  users: '/v1/users',
  user: '/v1/users/:name',
} as const;
