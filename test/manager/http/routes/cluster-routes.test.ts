/** GET /v1/join-tokens/scoped/:id over HTTPS with the client: one scoped token as the list shows it, 404 for an unknown ID. */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../../../src/api/client.js';
import { buildApp, type MusterApp } from '../../../../src/manager/http/app.js';
import { codeOf } from '../../../helpers/codes.js';
import { foundTestCluster, type TestCluster } from '../../../helpers/service.js';

let cluster: TestCluster;
let app: MusterApp;
let client: ApiClient;

beforeAll(async () => {
  cluster = await foundTestCluster();
  app = await buildApp({ services: cluster.services, tls: cluster.managerTls, logger: pino({ level: 'silent' }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  client = new ApiClient({ managers: [`127.0.0.1:${(app.server.address() as { port: number }).port}`], tls: cluster.managerTls });
});
afterAll(async () => {
  await client.close();
  await app.close();
  await cluster.cleanup();
});

describe('GET /v1/join-tokens/scoped/:id', () => {
  it('answers one scoped token as the list shows it, without its secret; TOKEN_NOT_FOUND (404) for an unknown ID', async () => {
    const created = await client.call('createScopedToken', { body: { role: 'worker', uses: 2, labels: { zone: 'a' } } });
    const one = await client.call('scopedToken', { params: { id: created.id } });
    expect(one).toEqual((await client.call('scopedTokens')).tokens.find((t) => t.id === created.id));
    expect(JSON.stringify(one)).not.toContain(created.token);
    expect(await codeOf(client.call('scopedToken', { params: { id: 'nope' } }))).toBe('TOKEN_NOT_FOUND');
    const anonymous = await app.inject({ method: 'GET', url: `/v1/join-tokens/scoped/${created.id}` });
    expect(anonymous.json()).toMatchObject({ statusCode: 401, code: 'AUTH_REQUIRED' });
  });
});
