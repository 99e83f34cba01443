/** The API client against real managers over HTTPS: it fails over from a manager that is down or cannot serve. */
import { createServer } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { buildApp, type MusterApp } from '../../src/manager/app.js';
import { codeOf } from '../helpers/codes.js';
import { foundTestCluster, type TestCluster } from '../helpers/service.js';

let cluster: TestCluster;
let app: MusterApp;
let address: string;

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  cluster = await foundTestCluster();
  app = await buildApp({ services: cluster.services, tls: cluster.managerTls, logger: pino({ level: 'silent' }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  address = `127.0.0.1:${(app.server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await app.close();
  await cluster.cleanup();
});

const tls = () => ({ rootPem: cluster.managerTls.rootPem, certPem: cluster.managerTls.certPem, keyPem: cluster.managerTls.keyPem });

describe('ApiClient', () => {
  it('moves on from a manager that refuses connections to one that answers, and stays there', async () => {
    const client = new ApiClient({ managers: [`127.0.0.1:${await closedPort()}`, address], tls: tls() });
    try {
      expect((await client.cluster()).clusterId).toBe(cluster.clusterId);
      expect(client.address).toBe(address);
      expect((await client.joinTokens()).worker).toMatch(/^SWMTKN-1-/);
    } finally {
      await client.close();
    }
  });

  it('reports an unreachable manager plainly when none answers', async () => {
    const client = new ApiClient({ managers: [`127.0.0.1:${await closedPort()}`], tls: tls() });
    expect(await codeOf(client.cluster())).toBe('MANAGER_UNREACHABLE');
    await client.close();
  });

  it('refuses a server whose certificate is not a manager certificate of the cluster (before sending anything)', async () => {
    const other = await foundTestCluster();
    const impostor = await buildApp({ services: other.services, tls: other.managerTls, logger: pino({ level: 'silent' }) });
    await impostor.listen({ host: '127.0.0.1', port: 0 });
    const client = new ApiClient({ managers: [`127.0.0.1:${(impostor.server.address() as { port: number }).port}`], tls: tls() });
    try {
      expect(await codeOf(client.joinTokens())).toBe('NOT_A_MANAGER');
    } finally {
      await client.close();
      await impostor.close();
      await other.cleanup();
    }
  });

  it('keeps the manager’s own error code and hint', async () => {
    const client = new ApiClient({ managers: [address], tls: tls() });
    const error = await client.getNode('0000000000000000000000000').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'NODE_NOT_FOUND', hint: expect.stringMatching(/muster node ls/) });
    await client.close();
  });
});
