/**
 * The HTTPS transport's timers on a pool of one connection (a node's
 * session): a request that waited in the queue for the connection is handed
 * one that is already up, so it is timed by its own timeout, not by the
 * connect timeout, and leaves no handshake listener on the connection.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatcher, send } from '../../src/api/transport.js';
import { scratchDir, selfSignedLoopback } from '../helpers/openssl.js';

const scratch = scratchDir('muster-transport-');
let server: Server;
let origin = '';
let certPem = '';
const sockets = new Set<TLSSocket>();
/** The connect timeout (far above a loopback handshake), and how long /slow takes to answer: longer (real time: the transport's timers are real). */
const CONNECT_MS = 1_000;
const SLOW_MS = 1_500;

beforeAll(async () => {
  const key = scratch.path('server.key');
  const cert = scratch.path('server.crt');
  selfSignedLoopback(key, cert, '127.0.0.1');
  certPem = readFileSync(cert, 'utf8');
  server = createHttpsServer({ key: readFileSync(key), cert: certPem }, (request, response) => {
    setTimeout(() => response.end('{}'), request.url === '/slow' ? SLOW_MS : 0);
  });
  server.on('secureConnection', (socket: TLSSocket) => sockets.add(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  scratch.cleanup();
});

describe('requests queued for a pool of one connection', () => {
  it('are timed by their own timeout once the connection is theirs, and add no handshake listener to it', async () => {
    // The first request makes the connection; the next three wait for it, each then waiting longer than the connect timeout for its answer.
    const dispatcher = createDispatcher({ tls: { ca: certPem }, connections: 1, connectTimeoutMs: CONNECT_MS });
    try {
      const paths = ['/fast', '/slow', '/fast', '/slow'];
      const asked = paths.map((path) => send({ dispatcher, url: `${origin}${path}`, method: 'GET', timeoutMs: 10 * SLOW_MS }));
      const answers = await Promise.allSettled(asked);
      expect(answers.map((a) => (a.status === 'fulfilled' ? a.value.status : String((a.reason as Error).message)))).toEqual([200, 200, 200, 200]);
      expect(sockets.size).toBe(1); // one connection, one handshake
      const [socket] = [...(dispatcher.agent.freeSockets[Object.keys(dispatcher.agent.freeSockets)[0]!] ?? [])];
      expect(socket?.listenerCount('secureConnect') ?? 0).toBe(0);
    } finally {
      await dispatcher.close();
    }
  });
});
