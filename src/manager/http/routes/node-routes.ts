/** Routes of the inventory: a node's own record, the node list, removal, promotion and demotion. */
import {
  ErrorResponses,
  NodeList,
  NodeParams,
  NodePatch,
  NodesQuery,
  NodeView,
  RemoveQuery,
  ROUTES,
  SanPolicyPatch,
  SanPolicyView,
  SelfQuery,
  SelfResponse,
  ServiceCertificateRequest,
  ServiceCertificateResponse,
  isYes,
} from '../../../api/schemas.js';
import { formatDuration } from '../../../core/duration.js';
import type { Sessions } from '../../services/sessions.js';
import { ADMINS, NODES, callerOf, type RoutesPlugin } from './route-kit.js';

/** A parked request's connection is cut this long after its wait, if nothing was sent. */
const SESSION_SLACK_MS = 15_000;

/** Whether a node's answer changed in what it acts on: renew, its role or standing, the managers, the trust bundle, the CRL. */
function actionable(before: SelfResponse, now: SelfResponse): boolean {
  return (
    now.renewNow ||
    now.node.role !== before.node.role ||
    now.node.status !== before.node.status ||
    now.managers.join(',') !== before.managers.join(',') ||
    now.rootCA !== before.rootCA ||
    now.crlNumber !== before.crlNumber ||
    now.certExpiry !== before.certExpiry
  );
}

/** The answer, with the spread window a busy manager asks for when every node is told to renew. */
function withSpread(answer: SelfResponse, sessions: Sessions): SelfResponse {
  const spreadMs = answer.reason === 'cert-expiry' || answer.reason === 'ca-rotation' ? sessions.renewSpreadMs() : undefined;
  return spreadMs === undefined ? answer : { ...answer, renewSpread: formatDuration(spreadMs) };
}

/** Registers the node routes. */
export const nodeRoutes: RoutesPlugin = async (app, { services }) => {
  const { inventory, sessions, caServer, sanPolicy } = services;

  // A session: the agent long-polls on a kept-alive connection; answered at once when the node must act.
  app.get(
    ROUTES.self,
    { config: { allow: NODES }, schema: { querystring: SelfQuery, response: { 200: SelfResponse, ...ErrorResponses } } },
    async (request) => {
      const caller = callerOf(request);
      const first = await inventory.self(caller);
      const waitS = request.query.wait === undefined ? 0 : Number(request.query.wait); // 1 to MAX_SESSION_WAIT_S (the schema)
      if (waitS === 0 || first.renewNow) return withSpread(first, sessions);
      // The connection stays quiet while the request waits: keep it past the server's idle cut-off.
      request.raw.socket.setTimeout(waitS * 1000 + SESSION_SLACK_MS);
      return withSpread(
        await sessions.hold({ id: first.node.id, role: first.node.role }, waitS * 1000, first, () => inventory.self(caller, { fresh: true }), actionable),
        sessions,
      );
    },
  );

  app.delete(ROUTES.self, { config: { allow: NODES }, schema: { response: { 200: NodeView, ...ErrorResponses } } }, async (request) =>
    inventory.leave(callerOf(request)),
  );

  // A node's own certificate asks for its services' (dockerd, nginx); a service certificate is no identity here (the authoriser refuses its OU).
  app.post(
    ROUTES.serviceCertificates,
    { config: { allow: NODES }, schema: { body: ServiceCertificateRequest, response: { 200: ServiceCertificateResponse, ...ErrorResponses } } },
    async (request) => caServer.issueService(callerOf(request), request.body),
  );

  app.patch(
    ROUTES.node,
    { config: { allow: ADMINS }, schema: { params: NodeParams, body: NodePatch, response: { 200: NodeView, ...ErrorResponses } } },
    async (request) => sanPolicy.updateNode(request.params.id, request.body, callerOf(request)),
  );

  app.get(ROUTES.sanPolicy, { config: { allow: ADMINS }, schema: { response: { 200: SanPolicyView, ...ErrorResponses } } }, async () => sanPolicy.view());

  app.patch(
    ROUTES.sanPolicy,
    { config: { allow: ADMINS }, schema: { body: SanPolicyPatch, response: { 200: SanPolicyView, ...ErrorResponses } } },
    async (request) => sanPolicy.updateLabel(request.body, callerOf(request)),
  );

  app.get(ROUTES.nodes, { config: { allow: ADMINS }, schema: { querystring: NodesQuery, response: { 200: NodeList, ...ErrorResponses } } }, async (request) => {
    const { limit, after, all } = request.query;
    return inventory.listNodes({ limit: limit === undefined ? undefined : Number(limit), after, all: isYes(all) });
  });

  app.get(ROUTES.node, { config: { allow: ADMINS }, schema: { params: NodeParams, response: { 200: NodeView, ...ErrorResponses } } }, async (request) =>
    inventory.getNode(request.params.id, callerOf(request)),
  );

  app.delete(
    ROUTES.node,
    { config: { allow: ADMINS }, schema: { params: NodeParams, querystring: RemoveQuery, response: { 200: NodeView, ...ErrorResponses } } },
    async (request) =>
      inventory.removeNode(request.params.id, { force: isYes(request.query.force), revokeAll: isYes(request.query.revokeAll) }, callerOf(request)),
  );

  app.post(ROUTES.promote, { config: { allow: ADMINS }, schema: { params: NodeParams, response: { 200: NodeView, ...ErrorResponses } } }, async (request) =>
    inventory.setRole(request.params.id, 'manager', callerOf(request)),
  );

  app.post(ROUTES.demote, { config: { allow: ADMINS }, schema: { params: NodeParams, response: { 200: NodeView, ...ErrorResponses } } }, async (request) =>
    inventory.setRole(request.params.id, 'worker', callerOf(request)),
  );
};
