/** GET /healthz: for load balancers and `muster status`; no authentication, no secrets. GET /metrics: for managers and admins. GET /v1/openapi.json. */
import type { Health } from '../../../api/schemas.js';
import { KEYS } from '../../../store/cluster-store.js';
import { handle, type RoutesPlugin } from './register.js';

/** Registers the health route: 200 when the store answers, 503 when it does not (the manager itself is up either way). */
export const healthRoutes: RoutesPlugin = async (app, { services }) => {
  handle(app, 'health', async (_request, reply) => {
    let store: Health['store'] = 'ok';
    try {
      await services.store.get(KEYS.cluster);
    } catch {
      store = 'unavailable';
    }
    const health: Health = { status: store === 'ok' ? 'ok' : 'degraded', role: 'manager', store };
    return reply.code(store === 'ok' ? 200 : 503).send(health);
  });
};

/** Registers GET /metrics (Prometheus text format), for manager and admin certificates. */
export const metricsRoutes: RoutesPlugin = async (app, { services }) => {
  handle(app, 'metrics', async (_request, reply) => {
    const { contentType, body } = await services.metrics.text();
    return reply.type(contentType).send(body);
  });
};

/** Registers GET /v1/openapi.json: the description @fastify/swagger makes from the routes' own schemas (registered on the app before this). */
export const openapiRoutes: RoutesPlugin = async (app) => {
  handle(app, 'openapi', async (_request, reply) => reply.type('application/json').send(app.swagger()));
};
