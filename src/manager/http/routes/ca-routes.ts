/** Routes of the CA server: the root, joins, renewals, API users, the CRL and the certificate inventory. */
import { CRL_PEM_LABEL } from '../../../pki/crl.js';
import { toPem } from '../../../pki/der.js';
import type { Verified } from '../authoriser.js';
import { renewedOnConnection } from '../peer.js';
import { callerOf, handle, type RoutesPlugin } from './register.js';

/** `?format=pem` on a CRL route (DER otherwise). */
const wantsPem = (query: unknown): boolean => query !== null && typeof query === 'object' && (query as Record<string, unknown>).format === 'pem';

/** Registers the CA routes. */
export const caRoutes: RoutesPlugin = async (app, { services }) => {
  const { caServer, state, revocations, inventory, rotation, adminCa, authoriser } = services;

  handle(app, 'rootCa', async (_request, reply) => reply.type('application/x-pem-file').send(state.root.pem));

  // The new root cross-signed by the one before it (public, like the root): a node that was down through a
  // rotation checks it against the root it trusts, and so learns the new root without a new token.
  handle(app, 'crossSigned', async (_request, reply) => reply.type('application/x-pem-file').send(state.trust.crossSigned.join('')));

  // The anchor that admits API users only (the admin CA, self-signed): public like the root, it is only a certificate.
  handle(app, 'adminAnchor', async (_request, reply) => reply.type('application/x-pem-file').send(await adminCa.anchor()));

  handle(app, 'joinPreflight', async (request) => caServer.preflight(request.body.token, request.ip));

  handle(app, 'join', async (request) => caServer.join(request.body, request.ip));

  // A node whose certificate expired renews here too, within the grace: the TLS handshake proved it holds the expired key.
  // The renewed certificate speaks for the connection from here on: the node keeps its session's connection (issue 31).
  handle(app, 'renew', async (request) => {
    let known: Verified | undefined;
    const answer = await caServer.renew(callerOf(request), request.body, (node, certificate, root) => {
      known = authoriser.issued(node, certificate, root);
    });
    return { ...answer, sameConnection: renewedOnConnection(request, answer.certificate, known) };
  });

  // An API user renews its own certificate with the one it holds (a revoked one is refused by the authorisation hook).
  handle(app, 'renewUser', async (request) => caServer.renewUser(callerOf(request), request.body));

  handle(app, 'createUser', async (request) => caServer.issueUser(request.body, callerOf(request)));

  // The CRL is public, as the root is: verifiers outside the cluster fetch it without a certificate.
  // DER: the current root's CRL (what nodes check). PEM: one CRL per root the cluster trusts, so that one
  // ssl_crl file covers every certificate, whichever root issued it (both while a rotation runs).
  handle(app, 'crl', async (request, reply) => {
    void reply.header('cache-control', 'max-age=60');
    if (!wantsPem(request.query)) return reply.type('application/pkix-crl').send((await revocations.crl()).der);
    return reply.type('application/x-pem-file').send((await revocations.crls()).map((crl) => toPem(crl.der, CRL_PEM_LABEL)).join(''));
  });

  // One root's CRL, by its key identifier: the distribution point each certificate names (its issuer's list).
  handle(app, 'issuerCrl', async (request, reply) => {
    const crl = await revocations.crlOf(request.params.issuer);
    void reply.header('cache-control', 'max-age=60');
    return wantsPem(request.query)
      ? reply.type('application/x-pem-file').send(toPem(crl.der, CRL_PEM_LABEL))
      : reply.type('application/pkix-crl').send(crl.der);
  });

  handle(app, 'rotateRoot', async (request) => rotation.start(request.body, callerOf(request)));

  handle(app, 'rotationStatus', async () => rotation.status());

  handle(app, 'certificates', async (request) => {
    const { limit, after } = request.query;
    return inventory.listCertificates({ ...(after === undefined ? {} : { after }), ...(limit === undefined ? {} : { limit: Number(limit) }) });
  });

  handle(app, 'revokeUser', async (request) => caServer.revokeUser(request.params.name, callerOf(request)));
};
