/** Route paths and the session's longest wait: values the client needs, kept apart from the schemas so it loads no schema code. */

/** Longest a node may ask GET /v1/nodes/self to wait (seconds). */
export const MAX_SESSION_WAIT_S = 120;

/** Route paths, written once. */
export const ROUTES = {
  health: '/healthz',
  openapi: '/v1/openapi.json',
  ca: '/v1/ca',
  join: '/v1/join',
  joinPreflight: '/v1/join/preflight',
  renew: '/v1/renew',
  self: '/v1/nodes/self',
  serviceCertificates: '/v1/nodes/self/service-certificates',
  sanPolicy: '/v1/san-policy',
  cluster: '/v1/cluster',
  joinTokens: '/v1/join-tokens',
  rotate: '/v1/join-tokens/:role/rotate',
  scopedTokens: '/v1/join-tokens/scoped',
  scopedToken: '/v1/join-tokens/scoped/:id',
  crl: '/v1/crl',
  issuerCrl: '/v1/crl/:issuer',
  crossSigned: '/v1/ca/cross-signed',
  rotation: '/v1/ca/rotation',
  rotateRoot: '/v1/ca/rotate',
  unlockKey: '/v1/unlock-key',
  rotateUnlockKey: '/v1/unlock-key/rotate',
  unlock: '/v1/unlock',
  backup: '/v1/store/backup',
  certificates: '/v1/certificates',
  metrics: '/metrics',
  nodes: '/v1/nodes',
  node: '/v1/nodes/:id',
  promote: '/v1/nodes/:id/promote',
  demote: '/v1/nodes/:id/demote',
  users: '/v1/users',
  user: '/v1/users/:name',
  renewUser: '/v1/users/renew',
  adminCa: '/v1/ca/admin',
} as const;
