/** GET /v1/nodes: the query is checked (inject), and the client pages through it over HTTPS. */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../../../src/api/client.js';
import { createDispatcher, send, type Dispatcher } from '../../../../src/api/transport.js';
import { MAX_SESSION_WAIT_S, SelfQuery } from '../../../../src/api/schemas.js';
import { Compile } from 'typebox/compile';
import { buildApp, type MusterApp } from '../../../../src/manager/http/app.js';
import { nodeIds, nodeRecord, seedNodes } from '../../../helpers/node-records.js';
import { foundTestCluster, type TestCluster } from '../../../helpers/service.js';
import { slow } from '../../../helpers/slowdown.js';

let cluster: TestCluster;
let app: MusterApp;
let client: ApiClient;
let port: number;
let managerDispatcher: Dispatcher;
const live = nodeIds('w', 25);
const removed = nodeIds('v', 10);

beforeAll(async () => {
  cluster = await foundTestCluster();
  await seedNodes(cluster.store, [...live.map((id) => nodeRecord(id)), ...removed.map((id) => nodeRecord(id, { removed: true }))]);
  app = await buildApp({ services: cluster.services, tls: cluster.managerTls, logger: pino({ level: 'silent' }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
  client = new ApiClient({ managers: [`127.0.0.1:${port}`], tls: cluster.managerTls });
  managerDispatcher = createDispatcher({ tls: { ca: cluster.managerTls.rootPem, cert: cluster.managerTls.certPem, key: cluster.managerTls.keyPem } });
});
afterAll(async () => {
  await client.close();
  await managerDispatcher.close();
  await app.close();
  await cluster.cleanup();
});

/** GET `path` over HTTPS as the manager (the query is judged after the certificate). */
async function getAsManager(path: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await send({ dispatcher: managerDispatcher, url: `https://127.0.0.1:${port}${path}`, method: 'GET', timeoutMs: slow(10_000) });
  return { status: res.status, json: JSON.parse(res.body.toString('utf8')) as Record<string, unknown> };
}

describe('GET /v1/nodes', () => {
  it.each([
    ['limit=1001'],
    ['limit=0'],
    ['limit=10000'],
    ['limit=-1'],
    ['limit=1e3'],
    ['limit=abc'],
    ['after=..%2Fetc'],
    ['after=ABCDEFGHIJKLMNOPQRSTUVWXY'],
    ['all=yes'],
  ])('answers ?%s with 400 BODY_INVALID (and with 401 to a caller without a certificate)', async (query) => {
    const res = await getAsManager(`/v1/nodes?${query}`);
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: 'BODY_INVALID' });
    const anonymous = await app.inject({ method: 'GET', url: `/v1/nodes?${query}` });
    expect(anonymous.json()).toMatchObject({ statusCode: 401, code: 'AUTH_REQUIRED' });
  });

  it.each([['limit=1000'], ['limit=1&after=0000000000000000000000000&all=1']])('accepts ?%s', async (query) => {
    expect((await getAsManager(`/v1/nodes?${query}`)).status).toBe(200);
  });

  it('serves pages the client follows to the end; removed nodes only with all', async () => {
    const first = await client.call('listNodes', { query: { limit: '10' } });
    expect(first.nodes).toHaveLength(10);
    expect(first.next).toBe(first.nodes[9]!.id);
    const second = await client.call('listNodes', { query: { limit: '10', after: first.next } });
    expect(second.nodes[0]!.id > first.next!).toBe(true);
    const pages: string[][] = [];
    for await (const page of client.nodePages({ pageSize: 4 })) pages.push(page.map((n) => n.id));
    expect(pages.every((p) => p.length <= 4)).toBe(true);
    expect(pages.flat()).toEqual([cluster.managerId, ...live].sort());
    const all: string[] = [];
    for await (const page of client.nodePages({ pageSize: 1000, all: true })) all.push(...page.map((n) => n.id));
    expect(all).toEqual([cluster.managerId, ...live, ...removed].sort());
  });
});

describe('GET /v1/nodes/self?wait=', () => {
  it('takes a wait of 1 to MAX_SESSION_WAIT_S seconds exactly, so the schema and the constant agree (sessions.test.ts refuses the rest over HTTPS)', () => {
    const check = Compile(SelfQuery);
    for (let wait = 0; wait <= 1000; wait++) expect(check.Check({ wait: String(wait) }), String(wait)).toBe(wait >= 1 && wait <= MAX_SESSION_WAIT_S);
    expect(check.Check({ wait: '060' })).toBe(false);
  });
});
