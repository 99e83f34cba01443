/** GET /v1/openapi.json: the API described from the routes' own schemas, checked by a real OpenAPI 3.1 validator. */
import { Validator } from '@seriousme/openapi-schema-validator';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API } from '../../../src/api/routes.js';
import { buildApp, type MusterApp } from '../../../src/manager/http/app.js';
import { MUSTER_VERSION } from '../../../src/core/version.js';
import { foundTestCluster, type TestCluster } from '../../helpers/service.js';
import packageJson from '../../../package.json' with { type: 'json' };

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

/** OpenAPI's path for a fastify route: /v1/nodes/:id → /v1/nodes/{id}. */
const openapiPath = (route: string): string => route.replace(/:([a-z]+)/g, '{$1}');

describe('the OpenAPI description', () => {
  it('is served without a certificate and validates as OpenAPI 3.1', async () => {
    const res = await app.inject({ method: 'GET', url: API.openapi.path });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as {
      openapi: string;
      info: { version: string };
      paths: Record<string, Record<string, { security?: unknown[]; responses?: Record<string, unknown>; requestBody?: unknown }>>;
    };
    const result = await new Validator().validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.version).toBe(MUSTER_VERSION);
  });

  it('describes every API route, with its body and answers, and says which need a cluster certificate', async () => {
    const doc = (await app.inject({ method: 'GET', url: API.openapi.path })).json() as {
      paths: Record<string, Record<string, { security?: unknown[]; responses?: Record<string, unknown>; requestBody?: unknown }>>;
    };
    for (const { path: route } of Object.values(API).filter((e) => e.path !== API.openapi.path))
      expect(Object.keys(doc.paths), route).toContain(openapiPath(route));
    const join = doc.paths[API.join.path]!.post!;
    expect(join.security).toBeUndefined(); // a join is authorised by its token, not a certificate
    expect(JSON.stringify(join.requestBody)).toContain('"csr"');
    expect(Object.keys(join.responses ?? {})).toEqual(expect.arrayContaining(['200', '400', '401', '429']));
    expect(doc.paths[API.listNodes.path]!.get!.security).toEqual([{ clusterCertificate: [] }]);
    expect(doc.paths[API.renew.path]!.post!.security).toEqual([{ clusterCertificate: [] }]);
  });

  it("says muster's version, as package.json and --version do", () => {
    expect(MUSTER_VERSION).toBe(packageJson.version);
  });
});
