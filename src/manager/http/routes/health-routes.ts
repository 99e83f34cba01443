/** GET /healthz: for load balancers and `muster status`; no authentication, no secrets. GET /metrics: for managers and admins. */
import { KEYS } from '../../../store/cluster-store.js';
import { ErrorResponses, Health, ROUTES } from '../../../api/schemas.js';
import { ADMINS, type RoutesPlugin } from './route-kit.js';

/** Registers the health route: 200 when the store answers, 503 when it does not (the manager itself is up either way). */
export const healthRoutes: RoutesPlugin = async (app, { services }) => {
  app.get(
    ROUTES.health,
    {
      config: { public: 'load balancers probe it without a certificate; it says only ok or degraded' },
      schema: { response: { ...ErrorResponses, 200: Health, 503: Health } },
    },
    async (_request, reply) => {
      let store: Health['store'] = 'ok';
      try {
        await services.store.get(KEYS.cluster);
      } catch {
        store = 'unavailable';
      }
      const health: Health = { status: store === 'ok' ? 'ok' : 'degraded', role: 'manager', store };
      return reply.code(store === 'ok' ? 200 : 503).send(health);
    },
  );
};

/** Registers GET /metrics (Prometheus text format), for manager and admin certificates. */
export const metricsRoutes: RoutesPlugin = async (app, { services }) => {
  app.get(ROUTES.metrics, { config: { allow: ADMINS } }, async (_request, reply) => {
    const { contentType, body } = await services.metrics.text();
    return reply.type(contentType).send(body);
  });
};
