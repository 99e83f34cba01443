/**
 * The manager's API end to end: `muster init` (in-process CLI) serving real
 * HTTPS on 127.0.0.1 with a random port, CSRs made by `openssl req`,
 * requests made by `curl`, certificates checked by `openssl verify`.
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/core/clock.js';
import { parseJoinToken } from '../../src/token/join-token.js';
import { runInProcess, type InProcessRun } from '../helpers/cli.js';
import { curl, type CurlResult } from '../helpers/curl.js';
import { opensslFixtures, opensslStatus, scratchDir, x509Text } from '../helpers/openssl.js';

const scratch = scratchDir('muster-e2e-api-');
const dataDir = scratch.path('manager');
const certs = join(dataDir, 'certificates');
let fx: ReturnType<typeof opensslFixtures>;
let manager: InProcessRun;
let base: string;
let workerToken: string;
let managerToken: string;
let root: string;
/** The manager's clock: real time at start, moved only by tests (curl and openssl use real time). */
const clock = new FakeClock(Date.now());

/** TLS flags for curl that trust the root and present no client certificate. */
const anon = (): string[] => ['--cacert', root];
/** TLS flags presenting a certificate and key. */
const as = (cert: string, key: string): string[] => ['--cacert', root, '--cert', cert, '--key', key];
const managerCreds = (): string[] => as(join(certs, 'node.crt'), join(certs, 'node.key'));

function postJson(path: string, body: unknown, tls: string[] = anon()): Promise<CurlResult> {
  return curl(
    [...tls, '-X', 'POST', '-H', 'content-type: application/json', '--data-binary', '@-', `${base}${path}`],
    typeof body === 'string' ? body : JSON.stringify(body),
  );
}

/** Joins with an openssl-made key and CSR; returns the files and the answer. */
async function joinWith(token: string, name: string) {
  const keyFile = fx.key('ec:P-256');
  const csr = fx.csr(keyFile, { subject: `/CN=${name}` });
  const res = await postJson('/v1/join', { token, csr, hostname: name });
  const certFile = res.status === 200 ? scratch.write(`${name}.crt`, String(res.json().certificate)) : '';
  return { res, keyFile, certFile };
}

async function startManager(argv: string[], withClock = true): Promise<void> {
  manager = runInProcess(argv, withClock ? { clock } : {});
  const info = await manager.ready;
  base = `https://${info.address}`;
}

beforeAll(async () => {
  fx = opensslFixtures(scratch);
  await startManager(['init', '--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--cert-expiry', '720h']);
  root = join(certs, 'root-ca.crt');
  const printed = manager.stdout();
  workerToken = /muster join --token (SWMTKN-1-\S+) 127\.0\.0\.1:\d+/.exec(printed)?.[1] ?? '';
  const tokens = (await curl([...managerCreds(), `${base}/v1/join-tokens`])).json();
  managerToken = String(tokens.manager);
});

afterAll(async () => {
  await manager?.stop();
  scratch.cleanup();
});

describe('muster init', () => {
  it('prints the join command in the Swarm shape', async () => {
    expect(manager.stdout()).toMatch(
      /To add a worker to this cluster, run the following command:\n\n {4}muster join --token SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25} 127\.0\.0\.1:\d+\n\nTo add a manager to this cluster, run 'muster join-token manager' and follow the instructions\.\n/,
    );
  });

  it('writes the key 0600 in 0700 folders', async () => {
    const { statSync } = await import('node:fs');
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(certs).mode & 0o777).toBe(0o700);
    expect(statSync(join(certs, 'node.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'manager')).mode & 0o777).toBe(0o700);
  });

  it('serves a certificate that curl verifies against the root at the advertise address', async () => {
    const res = await curl([...anon(), `${base}/v1/ca`]);
    expect(res.exitCode).toBe(0);
    expect(res.status).toBe(200);
    expect(res.body).toBe(readFileSync(root, 'utf8'));
  });

  it('puts the digest of the exact root bytes in the tokens', async () => {
    const digest = createHash('sha256').update(readFileSync(root)).digest();
    expect(parseJoinToken(workerToken).digest.equals(digest)).toBe(true);
    expect(parseJoinToken(managerToken).digest.equals(digest)).toBe(true);
    expect(workerToken).not.toBe(managerToken);
  });

  it('refuses a second init on the same data dir with a hint', async () => {
    const again = runInProcess(['init', '--data-dir', dataDir, '--listen-addr', '127.0.0.1:0']);
    expect(await again.exit).toBe(1);
    expect(again.stderr()).toMatch(/^error: .* already holds cluster [0-9a-z]{25}\nhint: restart it with 'muster run --data-dir /m);
  });
});

describe('joins over HTTPS', () => {
  it('the worker token yields a worker certificate that openssl verifies', async () => {
    const { res, certFile } = await joinWith(workerToken, 'w1');
    expect(res.status).toBe(200);
    const body = res.json();
    expect(opensslStatus(['verify', '-CAfile', root, certFile]).status).toBe(0);
    const clusterId = String(body.clusterId);
    expect(x509Text(readFileSync(certFile, 'utf8'))).toMatch(new RegExp(`Subject: O = ${clusterId}, OU = swarm-worker, CN = ${String(body.nodeId)}\\n`));
    expect(body.role).toBe('worker');
    expect(Date.parse(String(body.renewAfter))).toBeLessThan(Date.parse(String(body.notAfter)));
  });

  it('the manager token is refused on the embedded store, at preflight already, with the way out', async () => {
    const preflight = await postJson('/v1/join/preflight', { token: managerToken });
    expect(preflight.status).toBe(409);
    expect(preflight.json()).toMatchObject({ code: 'EMBEDDED_STORE', hint: expect.stringMatching(/muster store migrate --to etcd/) });
    expect((await postJson('/v1/join/preflight', { token: workerToken })).json()).toEqual({ role: 'worker' });
    const { res } = await joinWith(managerToken, 'm2');
    expect(res.status).toBe(409);
  });

  it('accepts RSA CSRs from openssl', async () => {
    const keyFile = fx.key('rsa:2048');
    const res = await postJson('/v1/join', { token: workerToken, csr: fx.csr(keyFile) });
    expect(res.status).toBe(200);
  });

  it('refuses a rotated token, a mistyped one and a foreign one', async () => {
    const old = workerToken;
    const rotated = await curl([...managerCreds(), '-X', 'POST', `${base}/v1/join-tokens/worker/rotate`]);
    expect(rotated.status).toBe(200);
    workerToken = String(rotated.json().worker);
    const stale = (await joinWith(old, 'stale')).res;
    expect(stale.status).toBe(401);
    expect(stale.json().code).toBe('TOKEN_REJECTED');
    const typo = workerToken.slice(0, -1) + (workerToken.endsWith('0') ? '1' : '0');
    expect((await joinWith(typo, 'typo')).res.json().code).toBe('TOKEN_REJECTED');
    const foreign = 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx';
    expect((await joinWith(foreign, 'foreign')).res.json().code).toBe('TOKEN_REJECTED');
    const fresh = (await joinWith(workerToken, 'fresh')).res;
    expect(fresh.status, fresh.body).toBe(200);
  });
});

describe('authorisation', () => {
  it('a worker certificate gets 403 on admin routes; no certificate gets 401', async () => {
    const { certFile, keyFile } = await joinWith(workerToken, 'w-auth');
    for (const path of ['/v1/nodes', '/v1/cluster', '/v1/join-tokens']) {
      const worker = await curl([...as(certFile, keyFile), `${base}${path}`]);
      expect(worker.status).toBe(403);
      expect(worker.json().code).toBe('AUTH_FORBIDDEN');
      const nobody = await curl([...anon(), `${base}${path}`]);
      expect(nobody.status).toBe(401);
      expect(nobody.json().code).toBe('AUTH_REQUIRED');
    }
    expect((await curl([...as(certFile, keyFile), `${base}/v1/nodes/self`])).status).toBe(200);
  });

  it('a promotion is refused on the embedded store; the worker renews as a worker', async () => {
    const { certFile, keyFile, res } = await joinWith(workerToken, 'w-promote');
    const nodeId = String(res.json().nodeId);
    const promoted = await curl([...managerCreds(), '-X', 'POST', `${base}/v1/nodes/${nodeId}/promote`]);
    expect(promoted.status).toBe(409);
    expect(promoted.json().code).toBe('EMBEDDED_STORE');
    expect((await curl([...as(certFile, keyFile), `${base}/v1/nodes/self`])).json()).toMatchObject({ renewNow: false });
    const renewed = await postJson('/v1/renew', { csr: fx.csr(fx.key('ec:P-256')) }, as(certFile, keyFile));
    expect(renewed.status, renewed.body).toBe(200);
    const pem = String(renewed.json().certificate);
    expect(x509Text(pem)).toMatch(new RegExp(`OU = swarm-worker, CN = ${nodeId}`));
    expect(opensslStatus(['verify', '-CAfile', root, scratch.write('renewed.crt', pem)]).status).toBe(0);
  });

  it("a removed node's certificate gets 403 on every route", async () => {
    const { certFile, keyFile, res } = await joinWith(workerToken, 'w-removed');
    const nodeId = String(res.json().nodeId);
    const removed = await curl([...managerCreds(), '-X', 'DELETE', `${base}/v1/nodes/${nodeId}?force=1`]);
    expect(removed.status).toBe(200);
    for (const [method, path] of [
      ['GET', '/v1/nodes/self'],
      ['POST', '/v1/renew'],
      ['GET', '/v1/nodes'],
      ['GET', '/v1/cluster'],
    ] as const) {
      const r =
        method === 'POST' ? await postJson(path, { csr: fx.csr(keyFile) }, as(certFile, keyFile)) : await curl([...as(certFile, keyFile), `${base}${path}`]);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.json().code).toBe('NODE_REMOVED');
    }
  });

  it('an API-user certificate lists nodes, and cannot be a server certificate', async () => {
    const joined = (await joinWith(workerToken, 'w-listed')).res; // a node of its own to find, so it passes alone
    expect(joined.status, joined.body).toBe(200);
    const keyFile = fx.key('ec:P-256');
    const res = await postJson('/v1/users', { name: 'alice', csr: fx.csr(keyFile) }, managerCreds());
    expect(res.status).toBe(200);
    const certFile = scratch.write('alice.crt', String(res.json().certificate));
    const nodes = await curl([...as(certFile, keyFile), `${base}/v1/nodes`]);
    expect(nodes.status).toBe(200);
    expect((nodes.json().nodes as { id: string }[]).map((n) => n.id)).toContain(String(joined.json().nodeId));
    // Given with the admin CA it is sent with, the chain builds: the purpose is what openssl refuses.
    const asServer = opensslStatus(['verify', '-CAfile', root, '-untrusted', certFile, '-purpose', 'sslserver', certFile]);
    expect(asServer.status).not.toBe(0);
    expect(asServer.output).toMatch(/purpose/i);
  });
});

describe('bad requests get a 4xx with a stable code, never a 5xx', () => {
  const longToken = `SWMTKN-1-${'a'.repeat(50)}-${'b'.repeat(25)}`;
  const cases: [string, () => Promise<CurlResult>, number, string][] = [
    ['invalid JSON', () => postJson('/v1/join', '{"token":'), 400, 'BODY_INVALID'],
    ['a JSON array', () => postJson('/v1/join', '[]'), 400, 'BODY_INVALID'],
    ['an empty body', () => postJson('/v1/join', ''), 400, 'BODY_INVALID'],
    ['missing token', () => postJson('/v1/join', { csr: 'x' }), 400, 'BODY_INVALID'],
    ['missing csr', () => postJson('/v1/join', { token: longToken }), 400, 'BODY_INVALID'],
    ['token of the wrong type', () => postJson('/v1/join', { token: 42, csr: 'x' }), 400, 'BODY_INVALID'],
    ['csr of the wrong type', () => postJson('/v1/join', { token: longToken, csr: ['x'] }), 400, 'BODY_INVALID'],
    ['an unknown field', () => postJson('/v1/join', { token: longToken, csr: 'x', role: 'manager' }), 400, 'BODY_INVALID'],
    ['labels that are not strings', () => postJson('/v1/join', { token: longToken, csr: 'x', labels: { a: 1 } }), 400, 'BODY_INVALID'],
    ['a hostname with spaces', () => postJson('/v1/join', { token: longToken, csr: 'x', hostname: 'a b' }), 400, 'BODY_INVALID'],
    // The declared length alone is refused; sending 70 KiB would race the server's close against curl's upload.
    [
      'an oversized body',
      () => curl([...anon(), '-X', 'POST', '-H', 'content-type: application/json', '-H', 'content-length: 70000', '--data-binary', '{}', `${base}/v1/join`]),
      413,
      'BODY_TOO_LARGE',
    ],
    [
      'a text/plain body',
      () => curl([...anon(), '-X', 'POST', '-H', 'content-type: text/plain', '--data-binary', 'hi', `${base}/v1/join`]),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    ['token "invalidtoken"', () => postJson('/v1/join', { token: 'invalidtoken', csr: 'x' }), 400, 'TOKEN_INVALID'],
    ['a v1 token with a 24-character secret', () => postJson('/v1/join', { token: longToken.slice(0, -1), csr: 'x' }), 400, 'TOKEN_INVALID'],
    ['SWMTKN-2 with only 4 parts', () => postJson('/v1/join', { token: `SWMTKN-2-${'a'.repeat(50)}-${'b'.repeat(25)}`, csr: 'x' }), 400, 'TOKEN_INVALID'],
    ['token version 0', () => postJson('/v1/join', { token: `SWMTKN-0-${'a'.repeat(50)}-${'b'.repeat(25)}`, csr: 'x' }), 400, 'TOKEN_INVALID'],
    ['an upper-case token', () => postJson('/v1/join', { token: longToken.toUpperCase().replace('SWMTKN', 'SWMTKN'), csr: 'x' }), 400, 'TOKEN_INVALID'],
    ['a 49-character digest', () => postJson('/v1/join', { token: `SWMTKN-1-${'a'.repeat(49)}-${'b'.repeat(25)}`, csr: 'x' }), 400, 'TOKEN_INVALID'],
    ['a CSR that is not PEM', () => postJson('/v1/join', { token: workerToken, csr: 'hello' }), 400, 'CSR_NOT_PEM'],
    ['a certificate instead of a CSR', () => postJson('/v1/join', { token: workerToken, csr: readFileSync(root, 'utf8') }), 400, 'CSR_MALFORMED'],
    ['a CSR with a bad signature', () => postJson('/v1/join', { token: workerToken, csr: tamper(fx.csr(fx.key('ec:P-256'))) }), 400, 'CSR_BAD_SIGNATURE'],
    ['an RSA-1024 CSR', () => postJson('/v1/join', { token: workerToken, csr: fx.csr(fx.key('rsa:1024')) }), 400, 'CSR_WEAK_KEY'],
    ['a secp256k1 CSR', () => postJson('/v1/join', { token: workerToken, csr: fx.csr(fx.key('ec:secp256k1')) }), 400, 'CSR_UNSUPPORTED_KEY'],
    ['renew without a client certificate', () => postJson('/v1/renew', { csr: 'x' }), 401, 'AUTH_REQUIRED'],
    ['renew with a certificate from another CA', () => postJson('/v1/renew', { csr: 'x' }, foreignCreds()), 401, 'CERT_UNTRUSTED'],
    [
      'patch with an expiry below 5m',
      () => curl([...managerCreds(), '-X', 'PATCH', '-H', 'content-type: application/json', '--data-binary', '{"certExpiry":"4m"}', `${base}/v1/cluster`]),
      400,
      'CERT_EXPIRY_TOO_SHORT',
    ],
    [
      'patch with a malformed expiry',
      () => curl([...managerCreds(), '-X', 'PATCH', '-H', 'content-type: application/json', '--data-binary', '{"certExpiry":"soon"}', `${base}/v1/cluster`]),
      400,
      'DURATION_INVALID',
    ],
    ['rotate an unknown role', () => curl([...managerCreds(), '-X', 'POST', `${base}/v1/join-tokens/admin/rotate`]), 400, 'BODY_INVALID'],
    ['an unknown node', () => curl([...managerCreds(), `${base}/v1/nodes/0000000000000000000000000`]), 404, 'NODE_NOT_FOUND'],
    ['an unknown route', () => curl([...anon(), `${base}/v1/nope`]), 404, 'ROUTE_NOT_FOUND'],
    [
      'a user name shaped like a node ID',
      () => postJson('/v1/users', { name: '0000000000000000000000000', csr: fx.csr(fx.key('ec:P-256')) }, managerCreds()),
      400,
      'BODY_INVALID',
    ],
  ];

  // Each case starts a fresh rate-limit window: the limiter is tested on its own below.
  beforeEach(() => clock.advance(61_000));

  it.each(cases)('%s', async (_name, send, status, code) => {
    const res = await send();
    expect(res.status, res.body).toBe(status);
    const body = res.json();
    expect(body.code).toBe(code);
    expect(body.statusCode).toBe(status);
    expect(typeof body.message).toBe('string');
    expect(res.body).not.toMatch(/at .*\.(js|ts):\d+/); // no stack traces
  });
});

describe('expired and rate-limited callers', () => {
  it('an expired API-user certificate gets 401 CERT_EXPIRED', async () => {
    // A one-hour user certificate (its own expiry): the cluster's setting, and so the manager's own certificate, stay as they are.
    const keyFile = fx.key('ec:P-256');
    const res = await postJson('/v1/users', { name: 'shortlived', csr: fx.csr(keyFile), expiry: '1h' }, managerCreds());
    expect(res.status, res.body).toBe(200);
    const certFile = scratch.write('shortlived.crt', String(res.json().certificate));
    expect((await curl([...as(certFile, keyFile), `${base}/v1/nodes`])).status).toBe(200);
    const before = clock.now();
    clock.advance(2 * 3_600_000);
    const expired = await curl([...as(certFile, keyFile), `${base}/v1/nodes`]);
    expect(expired.status).toBe(401);
    expect(expired.json().code).toBe('CERT_EXPIRED');
    clock.set(before); // time only moves forward for the limiter
  });

  it('answers 429 with Retry-After after ten failed joins from one address', async () => {
    clock.advance(61_000);
    for (let i = 0; i < 10; i++) expect((await postJson('/v1/join', { token: 'invalidtoken', csr: 'x' })).status).toBe(400);
    const wrong = workerToken.slice(0, -1) + (workerToken.endsWith('0') ? '1' : '0');
    const limited = await curl([
      ...anon(),
      '-D',
      '-',
      '-X',
      'POST',
      '-H',
      'content-type: application/json',
      '--data-binary',
      JSON.stringify({ token: wrong, csr: 'x' }),
      `${base}/v1/join`,
    ]);
    expect(limited.status).toBe(429);
    expect(limited.body).toMatch(/retry-after: 60/i);
    expect(limited.body).toMatch(/"code":"RATE_LIMITED"/);
    // Only failures count: the right token from the same address still joins.
    expect((await joinWith(workerToken, 'during-limit')).res.status).toBe(200);
    clock.advance(61_000);
    expect((await postJson('/v1/join', { token: wrong, csr: 'x' })).status).toBe(401);
  });
});

describe('restart', () => {
  it('keeps cluster ID, root, tokens and nodes', async () => {
    const before = (await curl([...managerCreds(), `${base}/v1/cluster?tokens=1`])).json();
    const nodesBefore = (await curl([...managerCreds(), `${base}/v1/nodes`])).json().nodes as { id: string }[];
    const rootBefore = readFileSync(root, 'utf8');
    expect(await manager.stop()).toBe(0);
    await startManager(['run', '--data-dir', dataDir, '--listen-addr', '127.0.0.1:0'], false);
    const after = (await curl([...managerCreds(), `${base}/v1/cluster?tokens=1`])).json();
    expect(after.clusterId).toBe(before.clusterId);
    expect(after.joinTokens).toEqual(before.joinTokens);
    expect((await curl([...anon(), `${base}/v1/ca`])).body).toBe(rootBefore);
    const nodesAfter = (await curl([...managerCreds(), `${base}/v1/nodes`])).json().nodes as { id: string }[];
    expect(nodesAfter.map((n) => n.id)).toEqual(nodesBefore.map((n) => n.id));
    // and the old worker token still joins
    expect((await joinWith(workerToken, 'after-restart')).res.status).toBe(200);
  });
});

function tamper(csrPem: string): string {
  const lines = csrPem.trim().split('\n');
  const body = Buffer.from(lines.slice(1, -1).join(''), 'base64');
  body[body.length - 5]! ^= 0x01;
  return `${lines[0]}\n${body.toString('base64')}\n${lines.at(-1)}\n`;
}

let foreignCache: string[] | undefined;
function foreignCreds(): string[] {
  if (foreignCache) return foreignCache;
  const key = fx.key('ec:P-256');
  const cert = scratch.write('foreign.crt', fx.selfSigned(key, { ca: false, days: 30, subject: '/O=x/OU=swarm-manager/CN=intruder' }));
  foreignCache = as(cert, key);
  return foreignCache;
}
