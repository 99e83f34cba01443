/**
 * The route audit (issue 32): every route the app registers, read from the app itself (not a list kept
 * by hand), is checked over real HTTPS with real certificates: no certificate → 401 unless the route is
 * one of the public routes below, a worker certificate → 403 on every admin route, an API-user
 * certificate → 403 on every node route. A route added later fails here until it is given a decision.
 */
import { request as httpsRequest } from 'node:https';
import { pino } from 'pino';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, registeredRoutes, type MusterApp } from '../../../src/manager/http/app.js';
import { ADMINS, NODES } from '../../../src/api/routes.js';
import { declaredAccess } from '../../../src/manager/http/routes/register.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';

/** Why each public route answers without a certificate. Anything not here needs one. */
const PUBLIC: Record<string, string> = {
  'GET /healthz': 'load balancers and `muster status` probe it without a certificate; it says only ok/degraded and the role',
  'GET /v1/openapi.json': 'the API description (paths and schemas, no secret data); clients and docs read it before holding a certificate',
  'GET /v1/ca': 'the root certificate: a joining node fetches it and checks it against the digest in its join token',
  'GET /v1/ca/cross-signed': 'the new root signed by the old one: a node that slept through a rotation checks it with the root it already trusts',
  'POST /v1/join/preflight': 'a joining node has no certificate yet; its join token is the credential (rate-limited)',
  'POST /v1/join': 'a joining node has no certificate yet; its join token is the credential (rate-limited)',
  'GET /v1/crl': 'revocation lists are public by nature: verifiers outside the cluster (nginx, curl) fetch them with no certificate',
  'GET /v1/crl/:issuer': 'the CRL distribution point each certificate names, fetched by the same outside verifiers',
  'GET /v1/ca/admin': 'the admin anchor: a certificate services like dockerd and nginx trust to admit API users only; no secret',
};

/** Routes for admins: managers and API users, never workers. */
const ADMIN_ROUTES = [
  'GET /v1/cluster',
  'PATCH /v1/cluster',
  'GET /v1/unlock-key',
  'POST /v1/unlock-key/rotate',
  'GET /v1/join-tokens',
  'POST /v1/join-tokens/:role/rotate',
  'POST /v1/join-tokens/scoped',
  'GET /v1/join-tokens/scoped',
  'GET /v1/join-tokens/scoped/:id',
  'DELETE /v1/join-tokens/scoped/:id',
  'POST /v1/users',
  'DELETE /v1/users/:name',
  'POST /v1/ca/rotate',
  'GET /v1/ca/rotation',
  'GET /v1/certificates',
  'GET /v1/nodes',
  'GET /v1/nodes/:id',
  'DELETE /v1/nodes/:id',
  'POST /v1/nodes/:id/promote',
  'POST /v1/nodes/:id/demote',
  'GET /metrics',
  'PATCH /v1/nodes/:id',
  'GET /v1/san-policy',
  'PATCH /v1/san-policy',
];

/** Routes for nodes: managers and workers, never API users. */
const NODE_ROUTES = ['POST /v1/renew', 'GET /v1/nodes/self', 'DELETE /v1/nodes/self', 'POST /v1/nodes/self/service-certificates'];

/** Routes for API users alone: an API user renews its own certificate with the one it holds; a node's is no user's. */
const USER_ROUTES = ['POST /v1/users/renew'];

/**
 * Only on the manager's local socket: over the network every caller gets 403, a manager too. Backup hands out
 * the sealed CA key (and, without autolock, the key that opens it). Unlock takes no certificate (a locked
 * manager cannot check one, its CA key is sealed; the unlock key is the credential), so only the local socket,
 * which only the host's root or owner reaches, guards it.
 */
const LOCAL_ROUTES = ['POST /v1/store/backup', 'POST /v1/unlock'];

type Decision = 'public' | 'admin' | 'node' | 'user' | 'local';

const DECISIONS = new Map<string, Decision>([
  ...Object.keys(PUBLIC).map((route) => [route, 'public'] as const),
  ...ADMIN_ROUTES.map((route) => [route, 'admin'] as const),
  ...NODE_ROUTES.map((route) => [route, 'node'] as const),
  ...USER_ROUTES.map((route) => [route, 'user'] as const),
  ...LOCAL_ROUTES.map((route) => [route, 'local'] as const),
]);

/** The decision for a registered route; fastify answers HEAD on each GET route with the GET route's config, so it has the GET route's decision. */
function decisionOf(method: string, url: string): Decision | undefined {
  return DECISIONS.get(`${method === 'HEAD' ? 'GET' : method} ${url}`);
}

let cluster: TestCluster;
let app: MusterApp;
let port: number;
type Tls = { cert: string; key: string } | undefined;
let worker: Tls;
let apiUser: Tls;
/** A service certificate (muster cert add) a worker was issued: never an identity on the API. */
let service: Tls;

beforeAll(async () => {
  cluster = await foundTestCluster();
  app = await buildApp({ services: cluster.services, tls: cluster.managerTls, logger: pino({ level: 'silent' }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
  worker = await freshWorker();
  const userKey = freshCsr();
  const user = await cluster.caServer.issueUser({ name: 'audit-user', csr: userKey.csr });
  apiUser = { cert: user.certificate, key: userKey.keyPem };
  const serviceKey = freshCsr();
  const holder = await cluster.authoriser.authorize(new X509Certificate(worker!.cert), ['manager', 'worker']);
  const issued = await cluster.caServer.issueService(holder, { name: 'audit', csr: serviceKey.csr, sans: [], client: true });
  service = { cert: issued.certificate, key: serviceKey.keyPem };
});
afterAll(async () => {
  await app.close();
  await cluster.cleanup();
});

async function freshWorker(): Promise<Tls> {
  const key = freshCsr();
  const joined = await cluster.caServer.join({ token: cluster.settings.joinTokens().worker, csr: key.csr }, '10.0.0.1');
  return { cert: joined.certificate, key: key.keyPem };
}

/** A path with its parameters filled by values that pass no check that runs after authorisation (so an allowed caller changes nothing). */
function concrete(url: string): string {
  return url.replace(':id', '0000000000000000000000000').replace(':role', 'nope').replace(':name', 'nobody').replace(':issuer', 'ab'.repeat(20));
}

/** One request over HTTPS on a fresh connection; POST and PATCH carry a body no route's schema accepts, so an allowed caller gets a 4xx and changes nothing. */
function call(tls: Tls, method: string, url: string): Promise<{ status: number; code: string | undefined }> {
  const body = method === 'POST' || method === 'PATCH' ? JSON.stringify({ routeAuditProbe: true }) : undefined;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        method,
        path: concrete(url),
        ca: cluster.managerTls.rootPem,
        servername: 'localhost',
        checkServerIdentity: () => undefined,
        agent: false,
        ...(tls === undefined ? {} : tls),
        headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let code: string | undefined;
          try {
            code = (JSON.parse(text) as { code?: string }).code;
          } catch {
            code = undefined; // HEAD, PEM, DER, Prometheus text
          }
          resolve({ status: res.statusCode ?? 0, code });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

// Each route is called over a fresh HTTPS connection, several times: a minute or more on a busy machine.
describe('route audit', () => {
  it('has a decision for every route the app registers, and no decision for a route that is gone', () => {
    const routes = registeredRoutes(app);
    expect(routes.length).toBeGreaterThan(30); // the GET routes' HEAD twins included
    const undecided = routes.filter((r) => decisionOf(r.method, r.url) === undefined).map((r) => `${r.method} ${r.url}`);
    expect(undecided, 'routes without a decision in test/manager/route-audit.test.ts').toEqual([]);
    const registered = new Set(routes.map((r) => `${r.method} ${r.url}`));
    expect([...DECISIONS.keys()].filter((route) => !registered.has(route))).toEqual([]);
  });

  it('matches what each route declares: public ones say why, admin routes allow managers and API users, node routes managers and workers', () => {
    for (const { method, url, access, localOnly } of registeredRoutes(app)) {
      const name = `${method} ${url}`;
      const decision = decisionOf(method, url);
      expect(localOnly, name).toBe(decision === 'local');
      if (decision === 'public') expect('public' in access && access.public.length > 10, name).toBe(true);
      else if (decision !== 'local')
        expect('allow' in access ? [...access.allow].sort() : access, name).toEqual(
          [...(decision === 'admin' ? ADMINS : decision === 'user' ? ['admin'] : NODES)].sort(),
        );
    }
  });

  it('refuses to register a route that declares neither roles nor a reason to be public, or both', () => {
    expect(() => declaredAccess({ method: 'GET', url: '/v1/new', config: {} })).toThrow(/must declare either config.allow .* or config.public/);
    expect(() => declaredAccess({ method: 'GET', url: '/v1/new' })).toThrow(/must declare/);
    expect(() => declaredAccess({ method: 'GET', url: '/v1/new', config: { public: '' } })).toThrow(/must declare/);
    expect(() => declaredAccess({ method: 'GET', url: '/v1/new', config: { allow: ['manager'], public: 'why' } })).toThrow(/must declare/);
  });

  it('fails to build an app with a route that declares nothing', async () => {
    const { default: Fastify } = await import('fastify');
    const bare = Fastify();
    bare.addHook('onRoute', (route) => void declaredAccess(route));
    await expect(
      bare.register(async (scope) => {
        scope.get('/v1/forgot', async () => 'open');
      }),
    ).rejects.toThrow(/GET \/v1\/forgot must declare/);
    await bare.close();
  });

  it('answers 401 without a certificate on every route but the public ones, which answer without one', { timeout: 180_000 }, async () => {
    for (const { method, url } of registeredRoutes(app)) {
      const name = `${method} ${url}`;
      const answer = await call(undefined, method, url);
      const decision = decisionOf(method, url);
      if (decision === 'public') {
        expect([401, 403], `${name} is public`).not.toContain(answer.status);
        expect(answer.status, name).toBeLessThan(500);
      } else if (decision === 'local') {
        expect(answer, name).toEqual({ status: 403, code: method === 'HEAD' ? undefined : 'AUTH_FORBIDDEN' });
      } else {
        expect(answer, name).toEqual({ status: 401, code: method === 'HEAD' ? undefined : 'AUTH_REQUIRED' });
      }
    }
  });

  it('answers 403 to a worker certificate on every admin route, and lets an API-user certificate past the check', { timeout: 180_000 }, async () => {
    const admin = registeredRoutes(app).filter((r) => decisionOf(r.method, r.url) === 'admin');
    expect(admin.length).toBeGreaterThanOrEqual(ADMIN_ROUTES.length);
    for (const { method, url } of admin) {
      const name = `${method} ${url}`;
      expect(await call(worker, method, url), name).toEqual({ status: 403, code: method === 'HEAD' ? undefined : 'AUTH_FORBIDDEN' });
      // The same request with an allowed certificate gets past authorisation (a 2xx, or a 4xx of the route's own).
      const allowed = await call(apiUser, method, url);
      expect([401, 403], name).not.toContain(allowed.status);
      expect(allowed.status, name).toBeLessThan(500);
    }
  });

  it('answers 403 to an API-user certificate on every node route, and lets a worker certificate past the check', { timeout: 180_000 }, async () => {
    const node = registeredRoutes(app).filter((r) => decisionOf(r.method, r.url) === 'node');
    expect(node.length).toBeGreaterThanOrEqual(NODE_ROUTES.length);
    for (const { method, url } of node) {
      const name = `${method} ${url}`;
      expect(await call(apiUser, method, url), name).toEqual({ status: 403, code: method === 'HEAD' ? undefined : 'AUTH_FORBIDDEN' });
      // A fresh worker each time: DELETE /v1/nodes/self takes the node out of the cluster.
      const allowed = await call(await freshWorker(), method, url);
      expect([401, 403], name).not.toContain(allowed.status);
      expect(allowed.status, name).toBeLessThan(500);
    }
  });

  it('answers 403 to a worker and a manager certificate on every API-user route, and lets an API-user certificate past the check', {
    timeout: 180_000,
  }, async () => {
    const manager = { cert: cluster.managerTls.certPem, key: cluster.managerTls.keyPem };
    const user = registeredRoutes(app).filter((r) => decisionOf(r.method, r.url) === 'user');
    expect(user.length).toBe(USER_ROUTES.length);
    for (const { method, url } of user) {
      const name = `${method} ${url}`;
      for (const tls of [worker, manager]) expect(await call(tls, method, url), name).toEqual({ status: 403, code: 'AUTH_FORBIDDEN' });
      const allowed = await call(apiUser, method, url);
      expect([401, 403], name).not.toContain(allowed.status);
      expect(allowed.status, name).toBeLessThan(500);
    }
  });

  it('answers 403 to a service certificate on every route but the public ones, its own issuing route included', { timeout: 180_000 }, async () => {
    for (const { method, url } of registeredRoutes(app)) {
      if (decisionOf(method, url) === 'public') continue;
      expect(await call(service, method, url), `${method} ${url}`).toEqual({ status: 403, code: method === 'HEAD' ? undefined : 'AUTH_FORBIDDEN' });
    }
  });

  it('answers 403 on the local-only routes over the network, to a manager certificate too', { timeout: 180_000 }, async () => {
    const manager = { cert: cluster.managerTls.certPem, key: cluster.managerTls.keyPem };
    for (const route of LOCAL_ROUTES) {
      const [method, url] = route.split(' ') as [string, string];
      for (const tls of [manager, worker, apiUser, undefined]) expect(await call(tls, method, url), route).toEqual({ status: 403, code: 'AUTH_FORBIDDEN' });
    }
  });
});
