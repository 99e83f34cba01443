/**
 * Abuse on the wire: slow clients, oversized headers and bodies, and old TLS
 * versions, against a manager serving real HTTPS on 127.0.0.1 with short
 * timeouts (the defaults are 5 s for headers and 10 s a request).
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { createConnection } from 'node:net';
import { connect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type MusterApp } from '../../src/manager/http/app.js';
import { createCsr } from '../../src/pki/csr.js';
import { foundTestCluster } from '../helpers/service.js';
import { opensslServer, scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

let cluster: Awaited<ReturnType<typeof foundTestCluster>>;
let app: MusterApp;
let port: number;
/** The same manager with an RSA key (the suites without ECDHE need one), and the files an openssl server serves the same identities from. */
let rsaApp: MusterApp;
let rsaPort: number;
const scratch = scratchDir('muster-abuse-');
const identity = { ec: [] as string[], rsa: [] as string[] };

beforeAll(async () => {
  cluster = await foundTestCluster();
  app = await buildApp({
    services: cluster.services,
    tls: cluster.managerTls,
    logger: pino({ level: 'silent' }),
    timeouts: { headersMs: 300, requestMs: 600, keepAliveMs: 300, connectionMs: 2_000 },
    limits: { handshakeMs: 400, total: 100, perSource: 20 },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
  const rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const manager = await cluster.authoriser.authorize(cluster.managerCert, ['manager', 'worker']);
  const rsaTls = {
    keyPem: rsaKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    certPem: (await cluster.caServer.renew(manager, { csr: createCsr({ privateKey: rsaKey }) })).certificate,
  };
  rsaApp = await buildApp({ services: cluster.services, tls: rsaTls, logger: pino({ level: 'silent' }) });
  await rsaApp.listen({ host: '127.0.0.1', port: 0 });
  rsaPort = (rsaApp.server.address() as { port: number }).port;
  identity.ec = ['-cert', scratch.write('ec.pem', cluster.managerTls.certPem), '-key', scratch.write('ec.key', cluster.managerTls.keyPem)];
  identity.rsa = ['-cert', scratch.write('rsa.pem', rsaTls.certPem), '-key', scratch.write('rsa.key', rsaTls.keyPem)];
}, 120_000); // two listeners, an RSA key and a renewal: seconds on a busy machine

afterAll(async () => {
  await app.close();
  await rsaApp.close();
  await cluster.cleanup();
  scratch.cleanup();
});

/**
 * Runs `attempt` against an openssl server started with `args` (one that allows what the manager
 * refuses, with the manager's own certificate) and returns what it resolved with: the same client
 * must succeed there, or its failure against the manager would prove nothing.
 */
async function againstPermissive<T>(args: string[], attempt: (port: number) => Promise<T>): Promise<T> {
  const server = await opensslServer(args);
  try {
    return await attempt(server.port);
  } finally {
    server.stop();
  }
}

/** The error code a connection attempt fails with (undefined when it connects). */
async function failureOf(attempt: Promise<TLSSocket>): Promise<string | undefined> {
  try {
    (await attempt).destroy();
    return undefined;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  }
}

/** Opens a TLS connection that trusts the cluster root (to the manager, or to the server on `to`). */
function open(
  options: { minVersion?: 'TLSv1' | 'TLSv1.2'; maxVersion?: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3'; ciphers?: string; ecdhCurve?: string } = {},
  to: number = port,
): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: to, ca: cluster.state.root.pem, servername: 'swarm-manager', ...options }, () => resolve(socket));
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
    const { text, ms } = await sendAndCollect(
      socket,
      'POST /v1/join HTTP/1.1\r\nHost: swarm-manager\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"token":"',
    );
    expect(text === '' || /^HTTP\/1\.1 (408|400)/.test(text)).toBe(true);
    expect(ms).toBeLessThan(5_000);
  });
});

describe('size limits', () => {
  it('headers over 16 KiB get 431', async () => {
    const socket = await open();
    const { text } = await sendAndCollect(socket, `GET /v1/ca HTTP/1.1\r\nHost: swarm-manager\r\nX-Pad: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
    expect(text).toMatch(/^HTTP\/1\.1 431/);
    expect(bodyOf(text)).toEqual({ statusCode: 431, code: 'HEADERS_TOO_LARGE', message: 'the request headers are too large' });
  });

  /**
   * A client that sends its whole request before it reads (Python's
   * http.client, many scripts): it must still find the 413 waiting, so the
   * manager reads what is left of the body instead of closing on the client
   * (its writes would then be answered with a reset, which takes the unread
   * answer with it).
   */
  async function sendAllThenRead(head: string, body: Iterable<string>): Promise<string> {
    const socket = await open();
    socket.pause(); // read nothing until everything is written
    const failed = new Promise<void>((resolve) => socket.once('error', () => resolve()));
    const write = (data: string): Promise<void> => new Promise((resolve) => (socket.write(data) ? resolve() : socket.once('drain', resolve)));
    await Promise.race([
      (async () => {
        await write(head);
        for (const piece of body) await write(piece);
      })(),
      failed,
    ]);
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('utf8')));
    socket.on('error', () => undefined);
    socket.resume();
    await new Promise((resolve) => (socket.destroyed ? resolve(undefined) : socket.once('close', resolve)));
    return text;
  }

  const MiB = 1024 * 1024;
  const chunks = function* (total: number): Generator<string> {
    const piece = 'y'.repeat(64 * 1024);
    for (let sent = 0; sent < total; sent += piece.length) yield `${piece.length.toString(16)}\r\n${piece}\r\n`;
    yield '0\r\n\r\n';
  };

  it('a chunked body over 64 KiB gets 413 with BODY_TOO_LARGE, even for a client that reads only once it has sent it all', async () => {
    const text = await sendAllThenRead(
      'POST /v1/join HTTP/1.1\r\nHost: swarm-manager\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
      chunks(4 * MiB),
    );
    expect(text).toMatch(/^HTTP\/1\.1 413 /);
    expect(bodyOf(text)).toMatchObject({ statusCode: 413, code: 'BODY_TOO_LARGE' });
  });

  it('so does a body over 64 KiB with its Content-Length', async () => {
    const piece = 'y'.repeat(64 * 1024);
    const text = await sendAllThenRead(
      `POST /v1/join HTTP/1.1\r\nHost: swarm-manager\r\nContent-Type: application/json\r\nContent-Length: ${4 * MiB}\r\nConnection: close\r\n\r\n`,
      Array.from({ length: 64 }, () => piece),
    );
    expect(text).toMatch(/^HTTP\/1\.1 413 /);
    expect(bodyOf(text)).toMatchObject({ statusCode: 413, code: 'BODY_TOO_LARGE' });
  });

  it('bodies over 64 KiB get 413 with BODY_TOO_LARGE', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/join',
      payload: JSON.stringify({ token: 'x', csr: 'y'.repeat(70 * 1024) }),
      headers: { 'content-type': 'application/json' },
    });
    expect(res.statusCode).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'BODY_TOO_LARGE' });
  });
});

/** The JSON body of a raw HTTP answer. */
function bodyOf(text: string): unknown {
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
}

describe('every error answer has the documented body', () => {
  it.each([
    { name: 'a bad request line', request: 'GARBAGE\r\n\r\n', status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'a header timeout', request: 'GET /v1/ca HTTP/1.1\r\nHost: x\r\n', status: 408, code: 'REQUEST_TIMEOUT' },
    {
      name: 'a 15 KB path',
      request: `GET /v1/nodes/${'a'.repeat(15 * 1024)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      status: 414,
      code: 'URI_TOO_LONG',
    },
    { name: '%ZZ in the path', request: 'GET /v1/nodes/%ZZ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', status: 400, code: 'REQUEST_MALFORMED' },
  ])('$name: $status with {statusCode, code, message}, never echoing the request', async ({ request, status, code }) => {
    const socket = await open();
    const { text } = await sendAndCollect(socket, request);
    expect(text).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    const body = bodyOf(text) as Record<string, unknown>;
    expect(body).toMatchObject({ statusCode: status, code });
    expect(typeof body.message).toBe('string');
    expect(text).not.toContain('aaaaaaaaaa');
  });
});

describe('connections', () => {
  /** A plain TCP connection that never starts TLS; resolves with how long the server kept it. */
  const idle = (): Promise<number> =>
    new Promise((resolve) => {
      const start = performance.now();
      const socket = createConnection({ host: '127.0.0.1', port }, () => undefined);
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(performance.now() - start));
    });

  it('drops a connection that never starts TLS after the handshake timeout (not 120 s)', async () => {
    expect(await idle()).toBeLessThan(3_000);
  });

  it('drops connections from one source beyond its cap at once', async () => {
    const sockets = Array.from({ length: 25 }, () => idle());
    const kept = await Promise.all(sockets);
    const dropped = kept.filter((ms) => ms < 200).length;
    expect(dropped).toBeGreaterThanOrEqual(5);
  });
});

describe('TLS 1.2 cipher suites and renegotiation', () => {
  it.each(['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'])('accepts %s', async (cipher) => {
    const socket = await open({ maxVersion: 'TLSv1.2', ciphers: cipher });
    expect(socket.getCipher().standardName).toMatch(/ECDHE_ECDSA/);
    socket.destroy();
  });

  // Each suite is refused by the manager with the key it needs (AES128-GCM-SHA256 and the other non-ECDHE suites
  // need an RSA certificate: against an ECDSA one no server could agree on them), and accepted by a permissive
  // openssl server with that same certificate, so the refusal is the manager's choice of suites.
  it.each([
    ['ECDHE-ECDSA-AES128-SHA256', 'ec'],
    ['ECDHE-ECDSA-AES256-SHA', 'ec'],
    ['ECDHE-ECDSA-AES128-CCM8', 'ec'],
    ['ECDHE-ECDSA-ARIA128-GCM-SHA256', 'ec'],
    ['AES128-GCM-SHA256', 'rsa'],
    ['AES256-SHA256', 'rsa'],
    ['ECDHE-RSA-AES128-SHA256', 'rsa'],
  ] as const)('refuses %s (%s key), which a permissive server with the same certificate accepts', async (cipher, key) => {
    const client = (to: number) => open({ maxVersion: 'TLSv1.2', ciphers: `${cipher}@SECLEVEL=0` }, to);
    const accepted = await againstPermissive([...identity[key], '-cipher', 'ALL@SECLEVEL=0'], client);
    expect(accepted.getCipher().name).toBe(cipher);
    accepted.destroy();
    // OpenSSL 3.0 (Node 20) names the alert SSLV3_ALERT_HANDSHAKE_FAILURE, 3.2 and later (Node 24) SSL/TLS_ALERT_HANDSHAKE_FAILURE.
    expect(await failureOf(client(key === 'ec' ? port : rsaPort))).toMatch(/^ERR_SSL_SSL(V3|\/TLS)_ALERT_HANDSHAKE_FAILURE$/);
  });

  it('the RSA-keyed manager accepts its own ECDHE-RSA suites (the refusals above are about suites, not the key)', async () => {
    for (const cipher of ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']) {
      const socket = await open({ maxVersion: 'TLSv1.2', ciphers: cipher }, rsaPort);
      expect(socket.getCipher().name).toBe(cipher);
      socket.destroy();
    }
  });

  it('refuses a renegotiation the client starts, which a server that allows it completes', async () => {
    const renegotiate = async (to: number): Promise<string | null> => {
      const socket = await open({ maxVersion: 'TLSv1.2' }, to);
      try {
        return await new Promise<string | null>((resolve) => {
          socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
          const started = socket.renegotiate({}, (error) => resolve(error === null ? null : ((error as NodeJS.ErrnoException).code ?? error.message)));
          if (!started) resolve('not started');
        });
      } finally {
        socket.destroy();
      }
    };
    // Node's own TLS server lets a client renegotiate (a few times a minute) unless told not to.
    const permissive = createTlsServer({ key: cluster.managerTls.keyPem, cert: cluster.managerTls.certPem }, (socket) => {
      socket.on('error', () => undefined);
      socket.resume();
    });
    await new Promise<void>((resolve) => permissive.listen(0, '127.0.0.1', resolve));
    try {
      expect(await renegotiate((permissive.address() as { port: number }).port)).toBeNull();
    } finally {
      permissive.close();
    }
    expect(await renegotiate(port)).toBe('ERR_SSL_NO_RENEGOTIATION');
  });

  it('names the cluster root in its certificate request, as Swarm does, and sends its certificate with that root', async () => {
    // Asynchronously: the manager answers from this very process.
    const out = await new Promise<string>((resolve, reject) => {
      const child = execFile(
        'openssl',
        ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-showcerts'],
        { encoding: 'utf8', timeout: slow(10_000) },
        (error, stdout) => (error ? reject(error) : resolve(stdout)),
      );
      child.stdin?.end();
    });
    expect(out).toMatch(new RegExp(`Acceptable client certificate CA names\\n.*O = ${cluster.clusterId}, CN = swarm-ca`));
    // The chain is set explicitly (servedChain), the same two certificates OpenSSL would have built per handshake.
    const chain = [...out.matchAll(/^ *(\d) s:(.*)$/gm)].map((m) => `${m[1]} ${m[2]}`);
    expect(chain).toEqual([`0 O = ${cluster.clusterId}, OU = swarm-manager, CN = ${cluster.managerId}`, `1 O = ${cluster.clusterId}, CN = swarm-ca`]);
  });
});

/** Runs openssl s_client against the manager, or the server on `to` (asynchronously: the manager answers from this very process); resolves with its exit code and output. */
function sClient(args: string[], to: number = port): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${to}`, ...args],
      { encoding: 'utf8', timeout: slow(10_000) },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, out: `${stdout}${stderr}` }),
    );
    child.stdin?.end();
  });
}

describe('key-exchange groups', () => {
  it('offers X25519, P-256 and P-384 only: a client that insists on ffdhe8192 or X448 cannot connect, one with X25519 can', async () => {
    const x25519 = await sClient(['-tls1_3', '-groups', 'X25519']);
    expect(x25519.code).toBe(0);
    expect(x25519.out).toMatch(/Server Temp Key: X25519/);
    for (const group of ['ffdhe8192', 'ffdhe2048', 'X448']) {
      // The same client gets through to a server that offers the group.
      const accepted = await againstPermissive([...identity.ec, '-groups', group], (to) => sClient(['-tls1_3', '-groups', group], to));
      expect(accepted.code, group).toBe(0);
      expect(accepted.out, group).toMatch(/Server Temp Key: (X448|DH), /);
      const refused = await sClient(['-tls1_3', '-groups', group]);
      expect(refused.code, group).not.toBe(0);
      expect(refused.out, group).toMatch(/alert handshake failure/);
      expect(refused.out, group).not.toMatch(/Server Temp Key/);
    }
    for (const group of ['P-256', 'P-384']) expect((await sClient(['-tls1_3', '-groups', group])).code, group).toBe(0);
  });

  it('TLS 1.2 takes the same curves, and no finite-field DHE suite (a permissive server with the same certificate takes both)', async () => {
    expect((await sClient(['-tls1_2', '-curves', 'P-256'])).code).toBe(0);
    // The RSA-keyed manager: in TLS 1.2 an ECDSA P-256 certificate needs P-256 among the client's curves, so
    // against the ECDSA manager a client offering X448 alone fails whatever groups the server takes.
    const x448 = ['-tls1_2', '-curves', 'X448'];
    expect((await againstPermissive([...identity.rsa, '-curves', 'X448'], (to) => sClient(x448, to))).out).toMatch(/Server Temp Key: X448/);
    expect((await againstPermissive([...identity.ec, '-curves', 'X448'], (to) => sClient(x448, to))).out).toMatch(/alert handshake failure/);
    const refusedX448 = await sClient(x448, rsaPort);
    expect(refusedX448.code).not.toBe(0);
    expect(refusedX448.out).toMatch(/alert handshake failure/);
    // DHE suites are RSA-keyed: the RSA manager is the one that could take them.
    const dhe = ['-tls1_2', '-cipher', 'DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305'];
    const acceptedDhe = await againstPermissive([...identity.rsa, '-cipher', 'ALL'], (to) => sClient(dhe, to));
    expect(acceptedDhe.code).toBe(0);
    expect(acceptedDhe.out).toMatch(/Cipher is DHE-RSA-/);
    const refusedDhe = await sClient(dhe, rsaPort);
    expect(refusedDhe.code).not.toBe(0);
    expect(refusedDhe.out).toMatch(/alert handshake failure/);
  });
});

describe('TLS versions', () => {
  it('refuses TLS 1.1 with a protocol_version alert, where a server that allows it talks TLS 1.1 with the same client', async () => {
    // The client lowers its own floor and security level, so it can speak TLS 1.1: a permissive server proves it.
    const client = (to: number) => open({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, to);
    const old = await againstPermissive([...identity.ec, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], client);
    expect(old.getProtocol()).toBe('TLSv1.1');
    old.destroy();
    // The manager's refusal is the server's alert, not a client-side error (such as ERR_SSL_NO_PROTOCOLS_AVAILABLE).
    expect(await failureOf(client(port))).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
  });

  it.each([['TLSv1.2' as const], ['TLSv1.3' as const]])('accepts %s', async (version) => {
    const socket = await open({ minVersion: 'TLSv1.2', maxVersion: version });
    expect(socket.getProtocol()).toBe(version);
    socket.destroy();
  });
});
