/**
 * The API's route table (DESIGN §4): every endpoint once, with its method,
 * path, who may call it, and the schemas of its params, query, body and
 * answer. The manager registers one handler per entry by name
 * (manager/http/routes/register.ts), the client makes one generic call over
 * it (client.ts), and the OpenAPI document comes from what the manager
 * registered. Schemas are named here, not imported: the manager looks the
 * names up in schemas.ts (TypeBox), the client in plain-schemas.ts, so a
 * client command loads no schema library; their types come along as types.
 */
import type { CertRole } from '../core/roles.js';
import type * as S from './schemas.js';

/** Longest a node may ask GET /v1/nodes/self to wait (seconds). */
export const MAX_SESSION_WAIT_S = 120;

/** How long after expiry a node that was not removed may still renew, unless the cluster says otherwise (DESIGN §11). */
export const DEFAULT_RENEW_GRACE_MS = 30 * 86_400_000;

/** Renewal reasons that reach every node at once (a shorter expiry, a root rotation): renewals are spread over a window. */
export const CLUSTER_WIDE_RENEW_REASONS: ReadonlySet<string> = new Set(['cert-expiry', 'ca-rotation']);

/** A schema named in the table, carrying the type it describes (the name is the export in schemas.ts and plain-schemas.ts). */
export interface SchemaRef<T> {
  readonly name: string;
  /** Never set: it only carries T. */
  readonly type?: T;
}

const schema = <T>(name: keyof typeof S & string): SchemaRef<T> => ({ name });

/** Routes for admins: managers and API users. */
export const ADMINS: readonly CertRole[] = ['manager', 'admin'];
/** Routes for nodes: managers and workers. */
export const NODES: readonly CertRole[] = ['manager', 'worker'];

/** One endpoint. It declares `allow` (the certificate roles) or `public` (why it needs no certificate), never neither. */
export interface Endpoint {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Fastify's form: `:name` for a parameter. */
  readonly path: string;
  readonly allow?: readonly CertRole[];
  readonly public?: string;
  /** Answered only on the manager's local socket. */
  readonly localOnly?: boolean;
  /** Also accepts a node certificate that expired within the renewal grace (renewal only). */
  readonly expiredWithinGrace?: boolean;
  readonly params?: SchemaRef<unknown>;
  readonly query?: SchemaRef<unknown>;
  readonly body?: SchemaRef<unknown>;
  /** The JSON answer; absent, the answer is bytes of `raw`'s media type. */
  readonly response?: SchemaRef<unknown>;
  readonly raw?: string;
  /** Statuses besides 200 that answer with the response schema (health: 503 while the store is down). */
  readonly alsoAnswers?: readonly number[];
  /** Left out of the OpenAPI document (the document itself). */
  readonly hidden?: boolean;
}

const PEM = 'application/x-pem-file';
const JOINING = 'a joining node has no certificate yet: its join token is the credential';

/** Every endpoint of the manager API. */
export const API = {
  health: {
    method: 'GET',
    path: '/healthz',
    public: 'load balancers probe it without a certificate; it says only ok or degraded',
    response: schema<S.Health>('Health'),
    alsoAnswers: [503],
  },
  openapi: {
    method: 'GET',
    path: '/v1/openapi.json',
    public: 'the API description (paths and schemas, no secret data); clients and docs read it before holding a certificate',
    raw: 'application/json',
    hidden: true,
  },
  metrics: { method: 'GET', path: '/metrics', allow: ADMINS, raw: 'text/plain' },

  rootCa: {
    method: 'GET',
    path: '/v1/ca',
    public: 'the root certificate: what a joining node pins against its token digest before it holds a certificate',
    raw: PEM,
  },
  crossSigned: {
    method: 'GET',
    path: '/v1/ca/cross-signed',
    public: 'the new root signed by the old one: a node that slept through a rotation checks it against the root it already trusts',
    raw: PEM,
  },
  adminAnchor: {
    method: 'GET',
    path: '/v1/ca/admin',
    public: 'the admin anchor: a certificate that services like dockerd and nginx trust to admit API users only; no secret',
    raw: PEM,
  },
  joinPreflight: {
    method: 'POST',
    path: '/v1/join/preflight',
    public: JOINING,
    body: schema<S.JoinPreflightRequest>('JoinPreflightRequest'),
    response: schema<S.JoinPreflight>('JoinPreflight'),
  },
  join: {
    method: 'POST',
    path: '/v1/join',
    public: JOINING,
    body: schema<S.JoinRequest>('JoinRequest'),
    response: schema<S.NodeCertificateResponse>('NodeCertificateResponse'),
  },
  renew: {
    method: 'POST',
    path: '/v1/renew',
    allow: NODES,
    expiredWithinGrace: true,
    body: schema<S.RenewRequest>('RenewRequest'),
    response: schema<S.NodeCertificateResponse>('NodeCertificateResponse'),
  },
  crl: {
    method: 'GET',
    path: '/v1/crl',
    public: 'revocation lists are public: verifiers outside the cluster (nginx, curl) fetch them without a certificate',
    raw: 'application/pkix-crl',
  },
  issuerCrl: {
    method: 'GET',
    path: '/v1/crl/:issuer',
    public: 'the distribution point each certificate names: fetched by verifiers that hold no certificate',
    params: schema<S.CrlParams>('CrlParams'),
    raw: 'application/pkix-crl',
  },
  rotateRoot: {
    method: 'POST',
    path: '/v1/ca/rotate',
    allow: ADMINS,
    body: schema<S.RotationRequest>('RotationRequest'),
    response: schema<S.RotationStatus>('RotationStatus'),
  },
  rotationStatus: { method: 'GET', path: '/v1/ca/rotation', allow: ADMINS, response: schema<S.RotationStatus>('RotationStatus') },
  certificates: {
    method: 'GET',
    path: '/v1/certificates',
    allow: ADMINS,
    query: schema<S.CertificatesQuery>('CertificatesQuery'),
    response: schema<S.CertificateList>('CertificateList'),
  },

  createUser: {
    method: 'POST',
    path: '/v1/users',
    allow: ADMINS,
    body: schema<S.UserRequest>('UserRequest'),
    response: schema<S.UserResponse>('UserResponse'),
  },
  renewUser: {
    method: 'POST',
    path: '/v1/users/renew',
    allow: ['admin'],
    body: schema<S.UserRenewRequest>('UserRenewRequest'),
    response: schema<S.UserResponse>('UserResponse'),
  },
  revokeUser: {
    method: 'DELETE',
    path: '/v1/users/:name',
    allow: ADMINS,
    params: schema<S.UserParams>('UserParams'),
    response: schema<S.UserRevoked>('UserRevoked'),
  },

  self: { method: 'GET', path: '/v1/nodes/self', allow: NODES, query: schema<S.SelfQuery>('SelfQuery'), response: schema<S.SelfResponse>('SelfResponse') },
  leave: { method: 'DELETE', path: '/v1/nodes/self', allow: NODES, response: schema<S.NodeView>('NodeView') },
  issueServiceCertificate: {
    method: 'POST',
    path: '/v1/nodes/self/service-certificates',
    allow: NODES,
    body: schema<S.ServiceCertificateRequest>('ServiceCertificateRequest'),
    response: schema<S.ServiceCertificateResponse>('ServiceCertificateResponse'),
  },
  listNodes: { method: 'GET', path: '/v1/nodes', allow: ADMINS, query: schema<S.NodesQuery>('NodesQuery'), response: schema<S.NodeList>('NodeList') },
  getNode: { method: 'GET', path: '/v1/nodes/:id', allow: ADMINS, params: schema<S.NodeParams>('NodeParams'), response: schema<S.NodeView>('NodeView') },
  updateNode: {
    method: 'PATCH',
    path: '/v1/nodes/:id',
    allow: ADMINS,
    params: schema<S.NodeParams>('NodeParams'),
    body: schema<S.NodePatch>('NodePatch'),
    response: schema<S.NodeView>('NodeView'),
  },
  removeNode: {
    method: 'DELETE',
    path: '/v1/nodes/:id',
    allow: ADMINS,
    params: schema<S.NodeParams>('NodeParams'),
    query: schema<S.RemoveQuery>('RemoveQuery'),
    response: schema<S.NodeView>('NodeView'),
  },
  promote: {
    method: 'POST',
    path: '/v1/nodes/:id/promote',
    allow: ADMINS,
    params: schema<S.NodeParams>('NodeParams'),
    response: schema<S.NodeView>('NodeView'),
  },
  demote: { method: 'POST', path: '/v1/nodes/:id/demote', allow: ADMINS, params: schema<S.NodeParams>('NodeParams'), response: schema<S.NodeView>('NodeView') },
  sanPolicy: { method: 'GET', path: '/v1/san-policy', allow: ADMINS, response: schema<S.SanPolicyView>('SanPolicyView') },
  updateSanPolicy: {
    method: 'PATCH',
    path: '/v1/san-policy',
    allow: ADMINS,
    body: schema<S.SanPolicyPatch>('SanPolicyPatch'),
    response: schema<S.SanPolicyView>('SanPolicyView'),
  },

  cluster: { method: 'GET', path: '/v1/cluster', allow: ADMINS, query: schema<S.ClusterQuery>('ClusterQuery'), response: schema<S.ClusterView>('ClusterView') },
  updateCluster: {
    method: 'PATCH',
    path: '/v1/cluster',
    allow: ADMINS,
    body: schema<S.ClusterPatch>('ClusterPatch'),
    response: schema<S.ClusterView>('ClusterView'),
  },
  unlockKey: { method: 'GET', path: '/v1/unlock-key', allow: ADMINS, response: schema<S.UnlockKeyView>('UnlockKeyView') },
  rotateUnlockKey: { method: 'POST', path: '/v1/unlock-key/rotate', allow: ADMINS, response: schema<S.UnlockKeyView>('UnlockKeyView') },
  // Unlocking is for a locked manager (node/locked-manager.ts serves it then); one that serves answers NOT_LOCKED.
  unlock: {
    method: 'POST',
    path: '/v1/unlock',
    localOnly: true,
    public:
      "on the local socket the caller is the host's root or owner; a locked manager has no CA key to check certificates with, the unlock key is the credential (a serving one answers NOT_LOCKED)",
    body: schema<S.UnlockRequest>('UnlockRequest'),
    response: schema<S.UnlockResult>('UnlockResult'),
  },
  // A backup holds the sealed CA key and, without autolock, goes out with the key that opens it: only to the manager's host.
  backup: {
    method: 'POST',
    path: '/v1/store/backup',
    allow: ['manager'],
    localOnly: true,
    body: schema<S.BackupRequest>('BackupRequest'),
    response: schema<S.BackupResponse>('BackupResponse'),
  },
  joinTokens: { method: 'GET', path: '/v1/join-tokens', allow: ADMINS, response: schema<S.JoinTokens>('JoinTokens') },
  rotateToken: {
    method: 'POST',
    path: '/v1/join-tokens/:role/rotate',
    allow: ADMINS,
    params: schema<S.RotateParams>('RotateParams'),
    response: schema<S.JoinTokens>('JoinTokens'),
  },
  createScopedToken: {
    method: 'POST',
    path: '/v1/join-tokens/scoped',
    allow: ADMINS,
    body: schema<S.ScopedTokenRequest>('ScopedTokenRequest'),
    response: schema<S.ScopedTokenCreated>('ScopedTokenCreated'),
  },
  scopedTokens: { method: 'GET', path: '/v1/join-tokens/scoped', allow: ADMINS, response: schema<S.ScopedTokenList>('ScopedTokenList') },
  scopedToken: {
    method: 'GET',
    path: '/v1/join-tokens/scoped/:id',
    allow: ADMINS,
    params: schema<S.ScopedTokenParams>('ScopedTokenParams'),
    response: schema<S.ScopedTokenView>('ScopedTokenView'),
  },
  removeScopedToken: {
    method: 'DELETE',
    path: '/v1/join-tokens/scoped/:id',
    allow: ADMINS,
    params: schema<S.ScopedTokenParams>('ScopedTokenParams'),
    response: schema<S.ScopedTokenView>('ScopedTokenView'),
  },
} as const satisfies Record<string, Endpoint>;

/** An endpoint's name in the table. */
export type RouteName = keyof typeof API;

type Carried<R> = R extends SchemaRef<infer T> ? T : undefined;
type Field<K extends RouteName, F extends string> = (typeof API)[K] extends Record<F, infer R> ? Carried<R> : undefined;

/** The path parameters of endpoint K (undefined when it has none). */
export type ParamsOf<K extends RouteName> = Field<K, 'params'>;
/** Its query string. */
export type QueryOf<K extends RouteName> = Field<K, 'query'>;
/** Its request body. */
export type BodyOf<K extends RouteName> = Field<K, 'body'>;
/** Its JSON answer (undefined for an endpoint that answers bytes). */
export type ResponseOf<K extends RouteName> = Field<K, 'response'>;

/** Endpoints that answer JSON, and those that answer bytes. */
export type JsonRoute = { [K in RouteName]: ResponseOf<K> extends undefined ? never : K }[RouteName];
export type RawRoute = Exclude<RouteName, JsonRoute>;

/** The path of `endpoint` with its parameters filled in (each encoded). */
export function pathOf(endpoint: Endpoint, params: object | undefined): string {
  return endpoint.path.replace(/:([a-zA-Z]+)/g, (_whole, name: string) => {
    const value = (params as Record<string, unknown> | undefined)?.[name];
    if (typeof value !== 'string') throw new Error(`${endpoint.method} ${endpoint.path}: no value for :${name}`);
    return encodeURIComponent(value);
  });
}
