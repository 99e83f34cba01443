/** Routes of the inventory: a node's own record, the node list, removal, promotion and demotion. */
import { ErrorResponses, NodeList, NodeParams, NodesQuery, NodeView, RemoveQuery, ROUTES, SelfResponse, isYes } from '../../api/schemas.js';
import { ADMINS, NODES, callerOf, type RoutesPlugin } from './route-kit.js';

/** Registers the node routes. */
export const nodeRoutes: RoutesPlugin = async (app, { services }) => {
  const { inventory } = services;

  app.get(ROUTES.self, { config: { allow: NODES }, schema: { response: { 200: SelfResponse, ...ErrorResponses } } }, async (request) => inventory.self(callerOf(request)));

  app.delete(ROUTES.self, { config: { allow: NODES }, schema: { response: { 200: NodeView, ...ErrorResponses } } }, async (request) => inventory.leave(callerOf(request)));

  app.get(ROUTES.nodes, { config: { allow: ADMINS }, schema: { querystring: NodesQuery, response: { 200: NodeList, ...ErrorResponses } } }, async (request) => {
    const { limit, after, all } = request.query;
    return inventory.listNodes({ limit: limit === undefined ? undefined : Number(limit), after, all: isYes(all) });
  });

  app.get(ROUTES.node, { config: { allow: ADMINS }, schema: { params: NodeParams, response: { 200: NodeView, ...ErrorResponses } } }, async (request) =>
    inventory.getNode(request.params.id, callerOf(request)),
  );

  app.delete(ROUTES.node, { config: { allow: ADMINS }, schema: { params: NodeParams, querystring: RemoveQuery, response: { 200: NodeView, ...ErrorResponses } } }, async (request) =>
    inventory.removeNode(request.params.id, { force: isYes(request.query.force), revokeAll: isYes(request.query.revokeAll) }, callerOf(request)),
  );

  app.post(ROUTES.promote, { config: { allow: ADMINS }, schema: { params: NodeParams, response: { 200: NodeView, ...ErrorResponses } } }, async (request) =>
    inventory.setRole(request.params.id, 'manager', callerOf(request)),
  );

  app.post(ROUTES.demote, { config: { allow: ADMINS }, schema: { params: NodeParams, response: { 200: NodeView, ...ErrorResponses } } }, async (request) =>
    inventory.setRole(request.params.id, 'worker', callerOf(request)),
  );
};
