/**
 * Abuse on the wire: slow clients, oversized headers and bodies, and old TLS
 * versions, against a manager serving real HTTPS on 127.0.0.1 with short
 * timeouts (the defaults are 5 s for headers and 10 s a request).
 */
import { connect, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type MusterApp } from '../../src/manager/app.js';
import { foundTestCluster } from '../helpers/service.js';

let cluster: Awaited<ReturnType<typeof foundTestCluster>>;
let app: MusterApp;
let port: number;

beforeAll(async () => {
  cluster = await foundTestCluster();
  app = await buildApp({
    services: cluster.services,
    tls: cluster.managerTls,
    logger: pino({ level: 'silent' }),
    timeouts: { headersMs: 300, requestMs: 600, keepAliveMs: 300, connectionMs: 2_000 },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});

afterAll(async () => {
  await app.close();
  await cluster.cleanup();
});

/** Opens a TLS connection that trusts the cluster root. */
function open(options: { minVersion?: 'TLSv1' | 'TLSv1.2'; maxVersion?: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3'; ciphers?: string } = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: cluster.state.root.pem, servername: 'swarm-manager', ...options }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Writes `data` and collects what the server sends until it closes the connection. */
function sendAndCollect(socket: TLSSocket, data: string): Promise<{ text: string; ms: number }> {
  const start = performance.now();
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('utf8')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ text, ms: performance.now() - start }));
    socket.write(data);
  });
}

describe('slow clients', () => {
  it('a client that never finishes its headers is answered 408 and cut off', async () => {
    const socket = await open();
    const { text, ms } = await sendAndCollect(socket, 'POST /v1/join HTTP/1.1\r\nHost: swarm-manager\r\nContent-Type: application/json\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeLessThan(5_000);
  });

  it('a client that never finishes its body is cut off', async () => {
    const socket = await open();
    const { text, ms } = await sendAndCollect(socket, 'POST /v1/join HTTP/1.1\r\nHost: swarm-manager\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"token":"');
    expect(text === '' || /^HTTP\/1\.1 (408|400)/.test(text)).toBe(true);
    expect(ms).toBeLessThan(5_000);
  });
});

describe('size limits', () => {
  it('headers over 16 KiB get 431', async () => {
    const socket = await open();
    const { text } = await sendAndCollect(socket, `GET /v1/ca HTTP/1.1\r\nHost: swarm-manager\r\nX-Pad: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
    expect(text).toMatch(/^HTTP\/1\.1 431/);
  });

  it('bodies over 64 KiB get 413 with BODY_TOO_LARGE', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/join', payload: JSON.stringify({ token: 'x', csr: 'y'.repeat(70 * 1024) }), headers: { 'content-type': 'application/json' } });
    expect(res.statusCode).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'BODY_TOO_LARGE' });
  });
});

describe('TLS versions', () => {
  it('refuses TLS 1.1', async () => {
    // Lowering the client's own floor and security level, so the refusal is the server's.
    const attempt = open({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    await expect(attempt).rejects.toThrow(/protocol|version|alert/i);
  });

  it.each([['TLSv1.2' as const], ['TLSv1.3' as const]])('accepts %s', async (version) => {
    const socket = await open({ minVersion: 'TLSv1.2', maxVersion: version });
    expect(socket.getProtocol()).toBe(version);
    socket.destroy();
  });
});
