/**
 * The manager's schemas compiled on first use (src/manager/http/lazy-compilers.ts):
 * nothing is compiled while the app gets ready, a route compiles its own
 * when it first serves, refusals read the same as with fastify's eager
 * compilers, and every schema of every route compiles.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, deferredSchemas, registeredRoutes, type MusterApp } from '../../../src/manager/http/app.js';
import { foundTestCluster, type TestCluster } from '../../helpers/service.js';

let cluster: TestCluster;
let app: MusterApp;

beforeAll(async () => {
  cluster = await foundTestCluster();
  app = await buildApp({ services: cluster.services, tls: cluster.managerTls, logger: pino({ level: 'silent' }) });
  await app.ready();
});
afterAll(async () => {
  await app.close();
  await cluster.cleanup();
});

const badJoin = () =>
  app.inject({ method: 'POST', url: '/v1/join', payload: JSON.stringify({ token: 'SWMTKN-1-x', csr: 7 }), headers: { 'content-type': 'application/json' } });

describe('schemas compiled on first use', () => {
  it('compiles a route’s schemas when it first serves, answers refusals as before, and every schema of every route compiles', async () => {
    // Ready, and nothing compiled: the validators and serializers of some hundred routes wait.
    const deferred = deferredSchemas(app)!;
    const atStart = deferred.count();
    expect(atStart).toBeGreaterThan(registeredRoutes(app).length);
    // Served first: the body's validator and the error's serializer compile now, and only they.
    const first = await badJoin();
    expect(first.statusCode).toBe(400);
    expect(first.json()).toMatchObject({ code: 'BODY_INVALID' });
    expect(first.json().message).toMatch(/csr/);
    const served = atStart - deferred.count();
    expect(served).toBeGreaterThan(0);
    expect(served).toBeLessThanOrEqual(3);
    const health = await app.inject({ method: 'GET', url: '/healthz' });
    expect(health.json()).toEqual({ status: 'ok', role: 'manager', store: 'ok' });

    // The rest, which this app has not served: every one compiles (a schema that does not would throw here).
    expect(deferred.compileAll()).toBeGreaterThan(registeredRoutes(app).length);
    expect(deferred.count()).toBe(0);
    expect(deferred.compileAll()).toBe(0);

    // And answers the same once everything is compiled.
    const again = await badJoin();
    expect(again.statusCode).toBe(400);
    expect(again.json()).toEqual(first.json());
  });
});
