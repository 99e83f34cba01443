/** Routes of the inventory: a node's own record, the node list, removal, promotion and demotion. */
import { isYes } from '../../../api/schemas.js';
import { callerOf, handle, type RoutesPlugin } from './register.js';

/** A parked request's connection is cut this long after its wait, if nothing was sent. */
const SESSION_SLACK_MS = 15_000;

/** Registers the node routes. */
export const nodeRoutes: RoutesPlugin = async (app, { services }) => {
  const { inventory, sessions, caServer, sanPolicy } = services;

  // A session: the agent long-polls on a kept-alive connection; answered at once when the node must act.
  handle(app, 'self', async (request) => {
    const first = await inventory.self(callerOf(request));
    const waitS = request.query.wait === undefined ? 0 : Number(request.query.wait); // 1 to MAX_SESSION_WAIT_S (the schema)
    if (waitS > 0 && !first.renewNow) {
      // The connection stays quiet while the request waits: keep it past the server's idle cut-off.
      request.raw.socket.setTimeout(waitS * 1000 + SESSION_SLACK_MS);
      // A parked request keeps no node record (a wake reads it again): memory per node in session (issue 31).
      request.caller = { ...callerOf(request), node: undefined };
    }
    // (The closure names this caller, not the one the authoriser made, so a waiting handler keeps no record either.)
    const caller = callerOf(request);
    return sessions.selfAnswer(first, waitS * 1000, () => inventory.self(caller, { fresh: true }));
  });

  handle(app, 'leave', async (request) => inventory.leave(callerOf(request)));

  // A node's own certificate asks for its services' (dockerd, nginx); a service certificate is no identity here (the authoriser refuses its OU).
  handle(app, 'issueServiceCertificate', async (request) => caServer.issueService(callerOf(request), request.body));

  handle(app, 'updateNode', async (request) => sanPolicy.updateNode(request.params.id, request.body, callerOf(request)));

  handle(app, 'sanPolicy', async () => sanPolicy.view());

  handle(app, 'updateSanPolicy', async (request) => sanPolicy.updateLabel(request.body, callerOf(request)));

  handle(app, 'listNodes', async (request) => {
    const { limit, after, all } = request.query;
    return inventory.listNodes({ limit: limit === undefined ? undefined : Number(limit), after, all: isYes(all) });
  });

  handle(app, 'getNode', async (request) => inventory.getNode(request.params.id, callerOf(request)));

  handle(app, 'removeNode', async (request) =>
    inventory.removeNode(request.params.id, { force: isYes(request.query.force), revokeAll: isYes(request.query.revokeAll) }, callerOf(request)),
  );

  handle(app, 'promote', async (request) => inventory.setRole(request.params.id, 'manager', callerOf(request)));

  handle(app, 'demote', async (request) => inventory.setRole(request.params.id, 'worker', callerOf(request)));
};
