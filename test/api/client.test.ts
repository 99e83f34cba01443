/** The API client against real managers over HTTPS: it fails over from a manager that is down or cannot serve, and checks what they answer. */
import { createServer as createHttpsServer, type Server } from 'node:https';
import { createServer } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { buildApp, type MusterApp } from '../../src/manager/http/app.js';
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
      expect((await client.call('cluster')).clusterId).toBe(cluster.clusterId);
      expect(client.address).toBe(address);
      expect((await client.call('joinTokens')).worker).toMatch(/^SWMTKN-1-/);
    } finally {
      await client.close();
    }
  });

  it('reports an unreachable manager plainly when none answers', async () => {
    const client = new ApiClient({ managers: [`127.0.0.1:${await closedPort()}`], tls: tls() });
    expect(await codeOf(client.call('cluster'))).toBe('MANAGER_UNREACHABLE');
    await client.close();
  });

  it('refuses a server whose certificate is not a manager certificate of the cluster (before sending anything)', async () => {
    const other = await foundTestCluster();
    const impostor = await buildApp({ services: other.services, tls: other.managerTls, logger: pino({ level: 'silent' }) });
    await impostor.listen({ host: '127.0.0.1', port: 0 });
    const client = new ApiClient({ managers: [`127.0.0.1:${(impostor.server.address() as { port: number }).port}`], tls: tls() });
    try {
      expect(await codeOf(client.call('joinTokens'))).toBe('NOT_A_MANAGER');
    } finally {
      await client.close();
      await impostor.close();
      await other.cleanup();
    }
  });

  it('keeps the manager’s own error code and hint', async () => {
    const client = new ApiClient({ managers: [address], tls: tls() });
    const error = await client.call('getNode', { params: { id: '0000000000000000000000000' } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'NODE_NOT_FOUND', hint: expect.stringMatching(/muster node ls/) });
    await client.close();
  });

  /** An HTTPS server with the cluster's manager certificate that answers every request with `answer` (or never). */
  async function fakeManager(answer: ((res: import('node:http').ServerResponse) => void) | 'never'): Promise<{ address: string; server: Server }> {
    const server = createHttpsServer({ cert: cluster.managerTls.certPem, key: cluster.managerTls.keyPem }, (_req, res) => {
      if (answer !== 'never') answer(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, server };
  }

  const stop = (server: Server): Promise<void> => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  };

  it('refuses an answer that does not match the API (a node without its role, a label that is not a string), with a clear MANAGER_ERROR', async () => {
    const real = new ApiClient({ managers: [address], tls: tls() });
    const { nodes } = await real.call('listNodes');
    await real.close();
    const node = nodes[0]!;
    const { role: _role, ...roleless } = node;
    for (const body of [
      { nodes: [roleless] },
      { nodes: [{ ...node, labels: { zone: 1 } }] },
      { nodes: [{ ...node, createdAt: 'yesterday' }] },
      { nodes: node },
    ]) {
      const fake = await fakeManager((res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)));
      const client = new ApiClient({ managers: [fake.address], tls: tls() });
      try {
        const error = await client.call('listNodes').catch((e: unknown) => e);
        expect(error).toMatchObject({ code: 'MANAGER_ERROR', message: "the manager's answer to GET /v1/nodes does not match the API" });
      } finally {
        await client.close();
        await stop(fake.server);
      }
    }
    // The same node, well formed, passes.
    const fake = await fakeManager((res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ nodes: [node] })));
    const client = new ApiClient({ managers: [fake.address], tls: tls() });
    try {
      expect((await client.call('listNodes')).nodes).toEqual([node]);
    } finally {
      await client.close();
      await stop(fake.server);
    }
  });

  it('refuses an answer that is not JSON', async () => {
    const fake = await fakeManager((res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>proxy error</html>'));
    const client = new ApiClient({ managers: [fake.address], tls: tls() });
    try {
      expect(await client.call('cluster').catch((e: unknown) => e)).toMatchObject({
        code: 'MANAGER_ERROR',
        message: 'the manager sent a response that is not JSON (HTTP 200)',
      });
    } finally {
      await client.close();
      await stop(fake.server);
    }
  });

  it('gives up on a manager that accepts the request and never answers, after its timeout', async () => {
    const fake = await fakeManager('never');
    const client = new ApiClient({ managers: [fake.address], tls: tls(), timeoutMs: 300 });
    try {
      const started = Date.now();
      expect(await client.call('cluster').catch((e: unknown) => e)).toMatchObject({
        code: 'MANAGER_UNREACHABLE',
        message: `the manager at ${fake.address} did not answer in time`,
      });
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await client.close();
      await stop(fake.server);
    }
  });

  it('destroy() fails a request still waiting for its answer (a session long poll when the node stops)', async () => {
    const fake = await fakeManager('never');
    const client = new ApiClient({ managers: [fake.address], tls: tls() });
    try {
      const waiting = client.self(60_000).catch((e: unknown) => e);
      // Wait until the request is on the wire: the server sees a connection.
      await new Promise<void>((resolve) => fake.server.once('request', () => resolve()));
      await client.destroy();
      expect(await waiting).toMatchObject({ code: 'MANAGER_UNREACHABLE' });
    } finally {
      await stop(fake.server);
    }
  });
});
