/** Routes of the CA server: the root, joins, renewals, API users, the CRL and the certificate inventory. */
import {
  CertificateList,
  CertificatesQuery,
  CrlParams,
  RotationRequest,
  RotationStatus,
  ErrorResponses,
  JoinPreflight,
  JoinPreflightRequest,
  JoinRequest,
  NodeCertificateResponse,
  RenewRequest,
  ROUTES,
  UserParams,
  UserRenewRequest,
  UserRequest,
  UserResponse,
  UserRevoked,
} from '../../../api/schemas.js';
import { CRL_PEM_LABEL } from '../../../pki/crl.js';
import { toPem } from '../../../pki/der.js';
import { ADMINS, NODES, callerOf, type RoutesPlugin } from './route-kit.js';

/** `?format=pem` on a CRL route (DER otherwise). */
const wantsPem = (query: unknown): boolean => query !== null && typeof query === 'object' && (query as Record<string, unknown>).format === 'pem';

/** Registers the CA routes. */
export const caRoutes: RoutesPlugin = async (app, { services }) => {
  const { caServer, state, revocations, inventory, rotation, adminCa } = services;

  app.get(
    ROUTES.ca,
    { config: { public: 'the root certificate: what a joining node pins against its token digest before it holds a certificate' } },
    async (_request, reply) => reply.type('application/x-pem-file').send(state.root.pem),
  );

  // The new root cross-signed by the one before it (public, like the root): a node that was down through a
  // rotation checks it against the root it trusts, and so learns the new root without a new token.
  app.get(
    ROUTES.crossSigned,
    { config: { public: 'the new root signed by the old one: a node that slept through a rotation checks it against the root it already trusts' } },
    async (_request, reply) => reply.type('application/x-pem-file').send(state.trust.crossSigned.join('')),
  );

  // The anchor that admits API users only (the admin CA, self-signed): public like the root, it is only a certificate.
  app.get(
    ROUTES.adminCa,
    { config: { public: 'the admin anchor: a certificate that services like dockerd and nginx trust to admit API users only; no secret' } },
    async (_request, reply) => reply.type('application/x-pem-file').send(await adminCa.anchor()),
  );

  app.post(
    ROUTES.joinPreflight,
    {
      config: { public: 'a joining node has no certificate yet: its join token is the credential' },
      schema: { body: JoinPreflightRequest, response: { 200: JoinPreflight, ...ErrorResponses } },
    },
    async (request) => caServer.preflight(request.body.token, request.ip),
  );

  app.post(
    ROUTES.join,
    {
      config: { public: 'a joining node has no certificate yet: its join token is the credential' },
      schema: { body: JoinRequest, response: { 200: NodeCertificateResponse, ...ErrorResponses } },
    },
    async (request) => caServer.join(request.body, request.ip),
  );

  // A node whose certificate expired renews here too, within the grace: the TLS handshake proved it holds the expired key.
  app.post(
    ROUTES.renew,
    { config: { allow: NODES, expiredWithinGrace: true }, schema: { body: RenewRequest, response: { 200: NodeCertificateResponse, ...ErrorResponses } } },
    async (request) => caServer.renew(callerOf(request), request.body),
  );

  // An API user renews its own certificate with the one it holds (a revoked one is refused by the authorisation hook).
  app.post(
    ROUTES.renewUser,
    { config: { allow: ['admin'] }, schema: { body: UserRenewRequest, response: { 200: UserResponse, ...ErrorResponses } } },
    async (request) => caServer.renewUser(callerOf(request), request.body),
  );

  app.post(ROUTES.users, { config: { allow: ADMINS }, schema: { body: UserRequest, response: { 200: UserResponse, ...ErrorResponses } } }, async (request) =>
    caServer.issueUser(request.body, callerOf(request)),
  );

  // The CRL is public, as the root is: verifiers outside the cluster fetch it without a certificate.
  // DER: the current root's CRL (what nodes check). PEM: one CRL per root the cluster trusts, so that one
  // ssl_crl file covers every certificate, whichever root issued it (both while a rotation runs).
  app.get(
    ROUTES.crl,
    { config: { public: 'revocation lists are public: verifiers outside the cluster (nginx, curl) fetch them without a certificate' } },
    async (request, reply) => {
      void reply.header('cache-control', 'max-age=60');
      if (!wantsPem(request.query)) return reply.type('application/pkix-crl').send((await revocations.crl()).der);
      return reply.type('application/x-pem-file').send((await revocations.crls()).map((crl) => toPem(crl.der, CRL_PEM_LABEL)).join(''));
    },
  );

  // One root's CRL, by its key identifier: the distribution point each certificate names (its issuer's list).
  app.get(
    ROUTES.issuerCrl,
    { config: { public: 'the distribution point each certificate names: fetched by verifiers that hold no certificate' }, schema: { params: CrlParams } },
    async (request, reply) => {
      const crl = await revocations.crlOf(request.params.issuer);
      void reply.header('cache-control', 'max-age=60');
      return wantsPem(request.query)
        ? reply.type('application/x-pem-file').send(toPem(crl.der, CRL_PEM_LABEL))
        : reply.type('application/pkix-crl').send(crl.der);
    },
  );

  app.post(
    ROUTES.rotateRoot,
    { config: { allow: ADMINS }, schema: { body: RotationRequest, response: { 200: RotationStatus, ...ErrorResponses } } },
    async (request) => rotation.start(request.body, callerOf(request)),
  );

  app.get(ROUTES.rotation, { config: { allow: ADMINS }, schema: { response: { 200: RotationStatus, ...ErrorResponses } } }, async () => rotation.status());

  app.get(
    ROUTES.certificates,
    { config: { allow: ADMINS }, schema: { querystring: CertificatesQuery, response: { 200: CertificateList, ...ErrorResponses } } },
    async (request) => {
      const { limit, after } = request.query;
      return inventory.listCertificates({ ...(after === undefined ? {} : { after }), ...(limit === undefined ? {} : { limit: Number(limit) }) });
    },
  );

  app.delete(ROUTES.user, { config: { allow: ADMINS }, schema: { params: UserParams, response: { 200: UserRevoked, ...ErrorResponses } } }, async (request) =>
    caServer.revokeUser(request.params.name, callerOf(request)),
  );
};
