/** The routes through fastify's inject (no sockets): public routes, validation, error shapes, and what needs a certificate. */
import { X509Certificate } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, servedChain, type MusterApp } from '../../src/manager/app.js';
import { systemClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { createRootCa, crossSignRoot, loadSigningCa } from '../../src/pki/ca.js';
import { parseCsr } from '../../src/pki/csr.js';
import { readPemBlocks } from '../../src/pki/der.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { ERROR_CATALOGUE } from '../../src/core/errors.js';
import { opensslStatus, scratchDir } from '../helpers/openssl.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../helpers/service.js';

const scratch = scratchDir('muster-app-');

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
  scratch.cleanup();
});

const post = (url: string, payload: unknown) => app.inject({ method: 'POST', url, payload: JSON.stringify(payload), headers: { 'content-type': 'application/json' } });

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

  it('needs a client certificate on every other route', async () => {
    for (const [method, url] of [['GET', '/v1/nodes'], ['GET', '/v1/cluster'], ['GET', '/v1/nodes/self'], ['POST', '/v1/join-tokens/worker/rotate']] as const) {
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

describe('servedChain', () => {
  const clusterId = 'chaintest0000000000000000';
  const rootA = loadSigningCa(createRootCa({ clusterId, clock: systemClock, random: systemRandom }));
  const rootB = loadSigningCa(createRootCa({ clusterId, clock: systemClock, random: systemRandom }));
  const leafOf = (ca: typeof rootA): string =>
    issueCertificate({ ca, csr: parseCsr(freshCsr().csr), role: 'manager', commonName: 'm', clusterId, hosts: ['127.0.0.1'], validityMs: 3_600_000, clock: systemClock, random: systemRandom }).certPem;

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
    const unrelated = crossSignRoot({ next: loadSigningCa(createRootCa({ clusterId, clock: systemClock, random: systemRandom })), by: rootA, random: systemRandom });
    const served = servedChain(leaf, rootC.certPem, [unrelated, cByB, bByA]);
    // Only the copies on the way up, in order; the self-signed new root is not needed (a client holding it stops there).
    expect(readPemBlocks(served).map((b) => new X509Certificate(b.der).fingerprint256)).toEqual([leaf, cByB, bByA].map((pem) => new X509Certificate(pem).fingerprint256));
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
