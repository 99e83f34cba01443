/** The routes through fastify's inject (no sockets): public routes, validation, error shapes, and what needs a certificate. */
import { X509Certificate } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatcher, send } from '../../../src/api/transport.js';
import { buildApp, servedChain, type MusterApp } from '../../../src/manager/http/app.js';
import { systemClock } from '../../../src/core/clock.js';
import { systemRandom } from '../../../src/core/random.js';
import { createRootCa, crossSignRoot, loadSigningCa } from '../../../src/pki/ca.js';
import { parseCsr } from '../../../src/pki/csr.js';
import { readPemBlocks } from '../../../src/pki/der.js';
import { issueCertificate } from '../../../src/pki/issue.js';
import { ERROR_CATALOGUE } from '../../../src/core/errors.js';
import { opensslStatus, scratchDir } from '../../helpers/openssl.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';
import { slow } from '../../helpers/slowdown.js';

const scratch = scratchDir('muster-app-');

let cluster: TestCluster;
let app: MusterApp;

let port: number;

beforeAll(async () => {
  cluster = await foundTestCluster();
  app = await buildApp({ services: cluster.services, tls: cluster.managerTls, logger: pino({ level: 'silent' }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});
afterAll(async () => {
  await app.close();
  await cluster.cleanup();
  scratch.cleanup();
});

/** Sends over HTTPS with `tls` (a client certificate, or none); a Buffer body goes as it is. */
async function call(tls: { cert?: string; key?: string }, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown) {
  const dispatcher = createDispatcher({ tls: { ca: cluster.managerTls.rootPem, ...tls } });
  try {
    const res = await send({ dispatcher, url: `https://127.0.0.1:${port}${path}`, method, body, timeoutMs: slow(10_000) });
    return { status: res.status, json: JSON.parse(res.body.toString('utf8')) as Record<string, unknown> };
  } finally {
    await dispatcher.close();
  }
}

/** The first manager's client certificate. */
const asManager = () => ({ cert: cluster.managerTls.certPem, key: cluster.managerTls.keyPem });

const post = (url: string, payload: unknown) =>
  app.inject({ method: 'POST', url, payload: JSON.stringify(payload), headers: { 'content-type': 'application/json' } });

describe('routes (inject)', () => {
  it('GET /v1/ca serves the root bundle verbatim', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/ca' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe(cluster.state.root.pem);
    expect(res.headers['content-type']).toMatch(/application\/x-pem-file/);
  });

  it("GET /v1/crl/{issuer} serves the root's CRL under its key identifier, the one the distribution point names; other identifiers get a typed 4xx", async () => {
    const [crl] = await cluster.revocations.crls();
    expect(crl!.issuer).toMatch(/^[0-9a-f]{40}$/);
    const byIssuer = await app.inject({ method: 'GET', url: `/v1/crl/${crl!.issuer}` });
    expect(byIssuer.statusCode).toBe(200);
    expect(byIssuer.headers['content-type']).toMatch(/application\/pkix-crl/);
    expect(byIssuer.rawPayload.equals((await app.inject({ method: 'GET', url: '/v1/crl' })).rawPayload)).toBe(true);
    expect((await app.inject({ method: 'GET', url: `/v1/crl/${crl!.issuer.toUpperCase()}?format=pem` })).body).toMatch(/^-----BEGIN X509 CRL-----\n/);
    expect((await app.inject({ method: 'GET', url: `/v1/crl/${'ab'.repeat(20)}` })).json()).toMatchObject({ statusCode: 404, code: 'CRL_ISSUER_UNKNOWN' });
    expect((await app.inject({ method: 'GET', url: '/v1/crl/not-hex' })).json()).toMatchObject({ statusCode: 400, code: 'BODY_INVALID' });
  });

  it('POST /v1/join/preflight tells the role, POST /v1/join issues', async () => {
    const token = cluster.settings.joinTokens().worker;
    expect((await post('/v1/join/preflight', { token })).json()).toEqual({ role: 'worker' });
    const joined = await post('/v1/join', { token, csr: freshCsr().csr, hostname: 'n1', labels: { zone: 'a' } });
    expect(joined.statusCode).toBe(200);
    expect(joined.json()).toMatchObject({ role: 'worker', clusterId: cluster.clusterId, managers: ['127.0.0.1:4377'] });
  });

  it.each([
    ['an unknown field', { token: 'x', csr: 'y', admin: true }, 'BODY_INVALID'],
    ['a label that is an object', { token: 'x', csr: 'y', labels: { a: { b: 1 } } }, 'BODY_INVALID'],
    ['a bad token', { token: 'nope', csr: 'y' }, 'TOKEN_INVALID'],
  ])('answers %s with a typed 4xx', async (_name, body, code) => {
    const res = await post('/v1/join', body);
    expect(res.statusCode).toBe(ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status);
    expect(res.json()).toMatchObject({ statusCode: res.statusCode, code });
  });

  it('refuses a label whose key is outside the pattern, whatever its value, on a join and on a scoped token', async () => {
    const before = (await cluster.store.list(KEYS.nodes)).length;
    for (const labels of [{ ü: { nested: [1] } }, { 'a b': 'c' }, { ok: 'fine', '': 'x' }]) {
      const res = await post('/v1/join', { token: cluster.settings.joinTokens().worker, csr: freshCsr().csr, labels });
      expect(res.json(), JSON.stringify(labels)).toMatchObject({ statusCode: 400, code: 'BODY_INVALID' });
      expect((await call(asManager(), 'POST', '/v1/join-tokens/scoped', { role: 'worker', labels })).json).toMatchObject({
        statusCode: 400,
        code: 'BODY_INVALID',
      });
    }
    expect((await cluster.store.list(KEYS.nodes)).length).toBe(before);
    expect((await post('/v1/join', { token: cluster.settings.joinTokens().worker, csr: freshCsr().csr, labels: { 'zone/a.b_c-d': 'x' } })).statusCode).toBe(
      200,
    );
  });

  it('still reads, lists and renews a node that an earlier version stored with such a label', async () => {
    const key = freshCsr();
    const joined = await cluster.caServer.join({ token: cluster.settings.joinTokens().worker, csr: key.csr }, '10.0.0.8');
    const ref = KEYS.nodes.ref(joined.nodeId);
    const entry = (await cluster.store.get(ref))!;
    expect(
      await cluster.store.commit({
        compares: [{ key: ref.key, version: entry.version }],
        puts: [{ key: ref.key, value: { ...entry.value, labels: { zone: 'a', ü: { nested: [1] } } } }],
        deletes: [],
      }),
    ).toBe(true);
    const listed = await call(asManager(), 'GET', `/v1/nodes/${joined.nodeId}`);
    expect(listed.status).toBe(200);
    expect(listed.json.labels).toEqual({ zone: 'a' });
    expect((await call({ cert: joined.certificate, key: key.keyPem }, 'POST', '/v1/renew', { csr: freshCsr().csr })).status).toBe(200);
  });

  it('refuses a query parameter it does not know (a misspelt flag is never ignored)', async () => {
    expect((await call(asManager(), 'DELETE', '/v1/nodes/0000000000000000000000000?revoke-all=1')).json).toMatchObject({
      statusCode: 400,
      code: 'BODY_INVALID',
    });
    expect((await call(asManager(), 'GET', '/v1/cluster?token=1')).json).toMatchObject({ statusCode: 400, code: 'BODY_INVALID' });
    expect((await call(asManager(), 'GET', '/v1/nodes?limt=5')).json).toMatchObject({ statusCode: 400, code: 'BODY_INVALID' });
    expect((await call(asManager(), 'GET', '/v1/certificates?page=2')).json).toMatchObject({ statusCode: 400, code: 'BODY_INVALID' });
    expect((await call(asManager(), 'DELETE', '/v1/nodes/0000000000000000000000000?revokeAll=1')).json).toMatchObject({
      statusCode: 404,
      code: 'NODE_NOT_FOUND',
    });
  });

  it('needs a client certificate on every other route', async () => {
    for (const [method, url] of [
      ['GET', '/v1/nodes'],
      ['GET', '/v1/cluster'],
      ['GET', '/v1/nodes/self'],
      ['POST', '/v1/join-tokens/worker/rotate'],
    ] as const) {
      const res = await app.inject({ method, url });
      expect(res.statusCode, url).toBe(401);
      expect(res.json().code).toBe('AUTH_REQUIRED');
    }
  });

  it('answers unknown routes and media types in the documented shape', async () => {
    const missing = await app.inject({ method: 'GET', url: '/v1/nope' });
    expect(missing.json()).toMatchObject({ statusCode: 404, code: 'ROUTE_NOT_FOUND' });
    const text = await app.inject({ method: 'POST', url: '/v1/join', payload: 'x', headers: { 'content-type': 'text/plain' } });
    expect(text.json()).toMatchObject({ statusCode: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
  });
});

describe('authorisation comes before validation', () => {
  const badRequests: [string, 'GET' | 'POST' | 'PATCH', string, unknown][] = [
    ['an expiry of the wrong type', 'PATCH', '/v1/cluster', { certExpiry: 5 }],
    ['an unknown field in a rotation', 'POST', '/v1/ca/rotate', { nope: 1 }],
    ['a user without a CSR', 'POST', '/v1/users', { name: 'alice' }],
    ['a scoped token of no role', 'POST', '/v1/join-tokens/scoped', { role: 'admin' }],
    ['a body that is not JSON', 'POST', '/v1/users', Buffer.from('{"name":')],
    ['an unknown role in the path', 'POST', '/v1/join-tokens/admin/rotate', undefined],
    ['a page size out of range', 'GET', '/v1/nodes?limit=0', undefined],
  ];

  it.each(badRequests)(
    'a worker sending %s to an admin route gets 403, a caller without a certificate 401, a manager 400',
    async (_name, method, path, body) => {
      const key = freshCsr();
      const joined = await cluster.caServer.join({ token: cluster.settings.joinTokens().worker, csr: key.csr }, '10.0.0.9');
      expect((await call({ cert: joined.certificate, key: key.keyPem }, method, path, body)).json).toMatchObject({ statusCode: 403, code: 'AUTH_FORBIDDEN' });
      expect((await call({}, method, path, body)).json).toMatchObject({ statusCode: 401, code: 'AUTH_REQUIRED' });
      expect((await call(asManager(), method, path, body)).json).toMatchObject({ statusCode: 400, code: 'BODY_INVALID' });
    },
  );
});

describe('servedChain', () => {
  const clusterId = 'chaintest0000000000000000';
  const rootA = loadSigningCa(createRootCa({ clusterId, clock: systemClock, random: systemRandom }));
  const rootB = loadSigningCa(createRootCa({ clusterId, clock: systemClock, random: systemRandom }));
  const leafOf = (ca: typeof rootA): string =>
    issueCertificate({
      ca,
      csr: parseCsr(freshCsr().csr),
      role: 'manager',
      commonName: 'm',
      clusterId,
      hosts: ['127.0.0.1'],
      validityMs: 3_600_000,
      clock: systemClock,
      random: systemRandom,
    }).certPem;

  it('sends a lone certificate with the root that signed it, picked by signature among roots of the same name', () => {
    const leaf = leafOf(rootB);
    const served = readPemBlocks(servedChain(leaf, rootA.certPem + rootB.certPem)).map((b) => new X509Certificate(b.der));
    expect(served).toHaveLength(2);
    expect(served[0]!.raw.equals(new X509Certificate(leaf).raw)).toBe(true);
    expect(served[1]!.raw.equals(new X509Certificate(rootB.certPem).raw)).toBe(true);
  });

  it('after rotations, sends a lone certificate with the cross-signed copies up to the oldest root: clients of any of them verify it', () => {
    const rootC = loadSigningCa(createRootCa({ clusterId, clock: systemClock, random: systemRandom }));
    const bByA = crossSignRoot({ next: rootB, by: rootA, random: systemRandom });
    const cByB = crossSignRoot({ next: rootC, by: rootB, random: systemRandom });
    const leaf = leafOf(rootC);
    const unrelated = crossSignRoot({
      next: loadSigningCa(createRootCa({ clusterId, clock: systemClock, random: systemRandom })),
      by: rootA,
      random: systemRandom,
    });
    const served = servedChain(leaf, rootC.certPem, [unrelated, cByB, bByA]);
    // Only the copies on the way up, in order; the self-signed new root is not needed (a client holding it stops there).
    expect(readPemBlocks(served).map((b) => new X509Certificate(b.der).fingerprint256)).toEqual(
      [leaf, cByB, bByA].map((pem) => new X509Certificate(pem).fingerprint256),
    );
    const chainFile = scratch.write('chain.pem', served);
    for (const root of [rootA, rootB, rootC]) {
      const result = opensslStatus(['verify', '-CAfile', scratch.write('root.pem', root.certPem), '-untrusted', chainFile, chainFile]);
      expect(result.status, result.output).toBe(0);
    }
  });

  it('leaves a certificate that brings its chain, or that no root of the bundle signed, as it is', () => {
    const withChain = leafOf(rootB) + rootA.certPem;
    expect(servedChain(withChain, rootA.certPem + rootB.certPem)).toBe(withChain);
    const foreign = leafOf(rootA);
    expect(servedChain(foreign, rootB.certPem)).toBe(foreign);
    expect(servedChain(foreign, rootB.certPem, [crossSignRoot({ next: rootB, by: rootA, random: systemRandom })])).toBe(foreign);
  });

  it('adds the copies above a chain a certificate brings (a rotation while the root before it is still trusted)', () => {
    const rootC = loadSigningCa(createRootCa({ clusterId, clock: systemClock, random: systemRandom }));
    const bByA = crossSignRoot({ next: rootB, by: rootA, random: systemRandom });
    const cByB = crossSignRoot({ next: rootC, by: rootB, random: systemRandom });
    const issued = leafOf(rootC) + cByB; // as the signer sends it while C replaces B
    const served = servedChain(issued, rootB.certPem + rootC.certPem, [cByB, bByA]);
    expect(served).toBe(issued + new X509Certificate(bByA).toString());
  });
});
