/**
 * The manager's HTTPS API (DESIGN §4) on fastify: TLS 1.2+, a client
 * certificate requested on every connection and judged per route, JSON
 * errors with stable codes, body and header limits, and timeouts against
 * slow clients. Routes live in routes/, one plugin per service; they
 * validate, call the service, and return.
 */
import { X509Certificate, constants } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { lazyCompilers, type Deferred } from './lazy-compilers.js';
import Fastify, { LogController, type FastifyError, type FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger as PinoLogger } from 'pino';
import { MusterError, isMusterError, type ErrorCode } from '../../core/errors.js';
import { listenOnSocket } from '../../core/local-socket.js';
import swagger from '@fastify/swagger';
import { LIMITS } from '../../api/schemas.js';
import { MUSTER_VERSION } from '../../core/version.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { readPemBlocks, toPem } from '../../pki/der.js';
import { isIssuedBy, readBundle } from '../../pki/peer.js';
import type { TrustFacts } from '../state/cluster-state.js';
import { caRoutes } from './routes/ca-routes.js';
import { clusterRoutes } from './routes/cluster-routes.js';
import { healthRoutes, metricsRoutes, openapiRoutes } from './routes/health-routes.js';
import { nodeRoutes } from './routes/node-routes.js';
import { declaredAccess, missingEndpoints, type RegisteredRoute, type Services } from './routes/register.js';
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from './connection-limits.js';
import { localSockets, peerCertificate } from './peer.js';
import { lazyChildLogger } from './request-logger.js';

/** The manager's own TLS identity. */
export interface ServerTls {
  keyPem: string;
  certPem: string;
}

/** Timeouts against slow or idle clients, in ms. */
export interface ServerTimeouts {
  /** Whole request, headers and body. */
  requestMs: number;
  /** Headers alone. */
  headersMs: number;
  /** An idle kept-alive connection. */
  keepAliveMs: number;
  /** A connection that sends nothing (TLS handshake included). */
  connectionMs: number;
}

/** Defaults a loaded manager can live with. */
export const DEFAULT_TIMEOUTS: ServerTimeouts = { requestMs: 10_000, headersMs: 5_000, keepAliveMs: 5_000, connectionMs: 10_000 };

export { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits };

/**
 * TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only
 * (no CBC, CCM8 or ARIA; nothing LUCKY13 applies to). TLS 1.3's own suites
 * are all AEAD and stay as OpenSSL orders them.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * Key-exchange groups, as Swarm offers them (Go's default curves): X25519,
 * P-256 and P-384, for TLS 1.3 and TLS 1.2's ECDHE alike. OpenSSL would
 * otherwise also take X448 and the finite-field groups up to ffdhe8192,
 * which an unauthenticated client can pick to cost the manager ~0.2 s of
 * CPU per handshake. TLS 1.2 has no DHE suite here (TLS12_CIPHERS).
 */
export const TLS_GROUPS = 'X25519:P-256:P-384';

/**
 * The chain the listener sends. A certificate goes out with the
 * cross-signed copies that lead from its root to the roots a rotation
 * replaced (`crossSigned`), so that a client holding only an old root (an
 * API user's ca.pem made before the rotation) still verifies it, while a
 * client holding the new root stops at that root. A certificate that came
 * alone, with no such copies, goes out with the root that issued it: given
 * a single certificate and a `ca`, OpenSSL builds and verifies the chain
 * again on every handshake (Node offers no SSL_MODE_NO_AUTO_CHAIN): 0.13 ms
 * of server CPU per fresh connection on OpenSSL 3.0 (bench:join), for the
 * same bytes on the wire. A certificate that brings its chain (a
 * cross-signed root during a rotation) keeps it, the copies above it added.
 */
export function servedChain(certPem: string, rootPem: string, crossSigned: readonly string[] = []): string {
  const blocks = readPemBlocks(certPem);
  const [leaf] = blocks;
  if (leaf === undefined) return certPem;
  const given = blocks.map((block) => new X509Certificate(block.der));
  const vouchers = crossSigned.flatMap((pem) => readBundle(pem)).filter((v) => !given.some((g) => g.fingerprint256 === v.fingerprint256));
  // Each copy up the chain is the one that signed the certificate below it (several rotations: several copies).
  const added: X509Certificate[] = [];
  const issuedBy = (below: X509Certificate): X509Certificate | undefined => vouchers.find((v) => !added.includes(v) && isIssuedBy(below, v));
  for (let next = issuedBy(given.at(-1)!); next !== undefined; next = issuedBy(next)) added.push(next);
  if (added.length === 0 && blocks.length === 1) {
    const issuer = readBundle(rootPem).find((root) => isIssuedBy(given[0]!, root));
    if (issuer !== undefined) added.push(issuer);
  }
  if (added.length === 0) return certPem;
  return [...blocks.map((block) => toPem(block.der, 'CERTIFICATE')), ...added.map((c) => c.toString())].join('');
}

/** The TLS settings of the listener (and of every certificate swap), with the roots a rotation replaced that still count at `now`. */
function tlsOptions(tls: ServerTls, trust: TrustFacts, now: number) {
  const live = (until: number | undefined): boolean => until === undefined || until > now;
  return {
    key: tls.keyPem,
    cert: servedChain(
      tls.certPem,
      trust.bundlePem,
      trust.vouchers.filter((v) => live(v.until)).map((v) => v.pem),
    ),
    // The CertificateRequest names the cluster roots, as Swarm's does, so a client with
    // several certificates knows which to send: every root a client certificate may
    // chain to, old roots too while their certificates are valid (API users made before
    // a rotation). TLS still judges nothing: the authorisation hook verifies chain,
    // validity and identity per route.
    ca: [trust.bundlePem, ...trust.roots.filter((r) => r.until !== undefined && live(r.until)).map((r) => r.cert.toString())].join(''),
    minVersion: 'TLSv1.2' as const,
    ciphers: TLS12_CIPHERS,
    ecdhCurve: TLS_GROUPS,
    honorCipherOrder: true,
    // A client may not renegotiate (a CPU sink, and nothing muster needs).
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  };
}

/** Options for {@link buildApp}. */
export interface AppOptions {
  services: Services;
  tls: ServerTls;
  logger: PinoLogger;
  timeouts?: ServerTimeouts;
  limits?: ConnectionLimits;
  /** The manager's own certificate: the caller of requests on its local socket. */
  own?: () => X509Certificate;
  /** Judges which roots a rotation replaced still count (default: the system clock). */
  clock?: Clock;
}

/** 5xx codes that say something about a peer (an external CA, the store), not about a bug here. */
const EXPECTED_5XX: ReadonlySet<ErrorCode> = new Set(['EXTERNAL_CA_UNAVAILABLE', 'EXTERNAL_CA_ERROR', 'STORE_UNAVAILABLE', 'STORE_CONFLICT']);

/** Maps fastify's own errors (bad JSON, limits, schema failures) to catalogue codes. */
function toMusterError(error: FastifyError): MusterError {
  if (isMusterError(error)) return error;
  if (error.validation !== undefined) {
    const first = error.validation[0];
    const where = first?.instancePath ? `${error.validationContext ?? 'body'}${first.instancePath.replaceAll('/', '.')}` : (error.validationContext ?? 'body');
    return new MusterError('BODY_INVALID', `the request ${where} is invalid: ${first?.message ?? 'schema mismatch'}`);
  }
  const byFastifyCode: Record<string, ErrorCode> = {
    FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
    FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
    FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BODY_INVALID',
    FST_ERR_CTP_EMPTY_JSON_BODY: 'BODY_INVALID',
    FST_ERR_CTP_INVALID_JSON_BODY: 'BODY_INVALID',
  };
  const code = byFastifyCode[error.code];
  if (code !== undefined) return new MusterError(code, code === 'BODY_INVALID' ? `the request body is invalid: ${error.message}` : undefined);
  if (error instanceof SyntaxError) return new MusterError('BODY_INVALID', 'the request body is not valid JSON');
  const status = error.statusCode ?? 500;
  if (status === 408) return new MusterError('REQUEST_TIMEOUT');
  if (status >= 400 && status < 500) return new MusterError('BODY_INVALID', error.message);
  return new MusterError('INTERNAL', 'internal error', { cause: error });
}

/** Node's HTTP parser errors, as catalogue errors. */
function clientError(error: NodeJS.ErrnoException): MusterError {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return new MusterError('HEADERS_TOO_LARGE');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new MusterError('REQUEST_TIMEOUT');
    default:
      return new MusterError('REQUEST_MALFORMED');
  }
}

/**
 * Answers a request Node could not parse with the documented error body,
 * then closes the connection. TLS failures (a handshake that timed out or
 * went wrong) reach here too, on a connection that has no HTTP yet: those
 * are closed without a word.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  const http = typeof error.code === 'string' && (error.code.startsWith('HPE_') || error.code.startsWith('ERR_HTTP_'));
  if (!http || !socket.writable || (socket as Socket & { _httpMessage?: unknown })._httpMessage !== undefined) {
    socket.destroy();
    return;
  }
  const mapped = clientError(error);
  const body = JSON.stringify(mapped.toJSON());
  const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[mapped.statusCode] ?? 'Bad Request';
  socket.end(
    `HTTP/1.1 ${mapped.statusCode} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Lingering close (RFC 9112 §9.6; nginx's lingering_close) for a connection
 * answered before its request body was all read (413, or a refusal before
 * the body was parsed). Node would close it as soon as the answer is
 * written, and the kernel would answer what the client still sends with a
 * reset, which takes the unread answer with it: a client that reads only
 * once it has sent everything (Python's http.client, many scripts) got no
 * answer at all. Instead the answer is followed by a half-close, and what
 * still comes is read and dropped until the client closes, for `ms` at most.
 */
function lingerOnClose(socket: Socket, ms: number): void {
  const closing = socket as Socket & { destroySoon?: () => void };
  if (typeof closing.destroySoon !== 'function') return;
  // Node's HTTP server ends a connection it will not keep with destroySoon (after the answer is written).
  closing.destroySoon = () => {
    socket.end();
    const timer = setTimeout(() => socket.destroy(), ms);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  };
}

/** Drops connections past the caps before TLS starts, so an idle flood cannot use up descriptors. */
function capConnections(server: import('node:net').Server, limits: ConnectionLimits): void {
  const perSource = new Map<string, number>();
  server.maxConnections = limits.total;
  server.on('connection', (socket: Socket) => {
    const source = socket.remoteAddress ?? '';
    const open = (perSource.get(source) ?? 0) + 1;
    if (open > limits.perSource) {
      socket.destroy();
      return;
    }
    perSource.set(source, open);
    socket.once('close', () => {
      const left = (perSource.get(source) ?? 1) - 1;
      if (left <= 0) perSource.delete(source);
      else perSource.set(source, left);
    });
  });
}

function sendError(reply: FastifyReply, error: MusterError): FastifyReply {
  const retry = error.details?.retryAfterSeconds;
  if (typeof retry === 'number') void reply.header('retry-after', String(retry));
  return reply.code(error.statusCode).type('application/json').send(error.toJSON());
}

/**
 * Serves the app on a Unix socket too (Docker's /var/run/docker.sock): plain
 * HTTP, every request acting as this manager. A stale socket a killed
 * process left is replaced; the socket is made 0600 inside the 0700
 * manager folder.
 */
export async function serveLocalSocket(
  app: { routing: (req: IncomingMessage, res: ServerResponse) => void },
  path: string,
  mark: (socket: Socket) => void = (socket) => localSockets.add(socket),
): Promise<{ close(): Promise<void> }> {
  const server = createHttpServer((req, res) => app.routing(req, res));
  server.on('connection', mark);
  return listenOnSocket(server, path);
}

/** The routes each app registered, with what they declared (the route audit reads them). */
const registries = new WeakMap<object, readonly RegisteredRoute[]>();

/** Every route `app` registered (HEAD twins of GET routes included), with its declared access. */
export function registeredRoutes(app: MusterApp): readonly RegisteredRoute[] {
  return registries.get(app) ?? [];
}

/** Each app's deferred schema compilations (lazy-compilers.ts). */
const compilations = new WeakMap<object, Deferred>();

/** The validators and serializers of `app`'s routes not yet compiled (each is compiled on first use): how many, or compiled now. */
export function deferredSchemas(app: MusterApp): Deferred | undefined {
  return compilations.get(app);
}

/** Builds the fastify app (not yet listening). */
export async function buildApp(options: AppOptions) {
  const { services } = options;
  const { compilersFactory, deferred } = lazyCompilers();
  const timeouts = options.timeouts ?? DEFAULT_TIMEOUTS;
  const limits = options.limits ?? DEFAULT_CONNECTION_LIMITS;
  const app = Fastify({
    // fastify's own lines ("Server listening at …") are not muster's: below debug, only its warnings and errors come through.
    loggerInstance: ['debug', 'trace'].includes(options.logger.level) ? options.logger : options.logger.child({}, { level: 'warn' }),
    logController: new LogController({ disableRequestLogging: true }), // state changes are logged by the services
    // A request's child logger is made when it first writes a line: most never do (request-logger.ts).
    childLoggerFactory: lazyChildLogger,
    bodyLimit: LIMITS.bodyBytes,
    connectionTimeout: timeouts.connectionMs,
    requestTimeout: timeouts.requestMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    return503OnClosing: true,
    // Each route's schemas compiled when it first serves, not all at start-up (lazy-compilers.ts).
    schemaController: { compilersFactory },
    // Refuse rather than repair: no type coercion, no silently dropped fields.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
    // Errors Node's HTTP parser and fastify's router meet before a route runs, in the documented body too.
    clientErrorHandler: answerClientError,
    frameworkErrors: (error, _request, reply) => {
      void sendError(
        reply,
        error.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? new MusterError('URI_TOO_LONG')
          : new MusterError('REQUEST_MALFORMED', 'the request path is not valid (bad percent-encoding)'),
      );
    },
    https: {
      ...tlsOptions(options.tls, services.state.trust, (options.clock ?? systemClock).now()),
      // Ask every client for a certificate; each route decides what it needs.
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: limits.handshakeMs,
      maxHeaderSize: 16 * 1024,
      headersTimeout: timeouts.headersMs,
      // Node enforces header and request timeouts on this tick (default 30 s, which would stretch them).
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(timeouts.headersMs / 2))),
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  capConnections(app.server, limits);
  // Every route says who may call it: roles, or why it is public. One that says neither fails here, so the app does not build.
  const registered: RegisteredRoute[] = [];
  const endpoints = new Set<string>();
  registries.set(app, registered);
  compilations.set(app, deferred);
  app.addHook('onRoute', (route) => {
    registered.push(declaredAccess(route));
    if (route.config?.endpoint !== undefined) endpoints.add(route.config.endpoint);
  });
  app.removeContentTypeParser('text/plain'); // JSON only: anything else is a 415

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const mapped = toMusterError(error);
    services.metrics.failures.inc({ code: mapped.code });
    if (mapped.statusCode >= 500 && !EXPECTED_5XX.has(mapped.code)) {
      request.log.error({ err: error, route: request.routeOptions.url }, 'request failed');
    } else {
      request.log.debug({ code: mapped.code, route: request.routeOptions.url }, 'request refused');
    }
    if (!request.raw.complete) lingerOnClose(request.raw.socket, timeouts.requestMs);
    return sendError(reply, mapped);
  });
  app.setNotFoundHandler((request, reply) => {
    services.metrics.failures.inc({ code: 'ROUTE_NOT_FOUND' });
    return sendError(reply, new MusterError('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`));
  });

  // Authorisation, in one place: routes list the roles they allow in their config. It runs before the body is
  // read or anything is validated, so a caller without the right certificate learns nothing from validation
  // errors and costs no parsing.
  app.addHook('onRequest', async (request) => {
    const { allow, expiredWithinGrace, localOnly } = request.routeOptions.config;
    if (localOnly === true && !localSockets.has(request.raw.socket))
      throw new MusterError('AUTH_FORBIDDEN', "this route answers only on the manager's host, through its local socket");
    if (allow === undefined) return;
    request.caller = await services.authoriser.authorize(peerCertificate(request, options.own), allow, { expiredWithinGrace: expiredWithinGrace === true });
  });

  // The OpenAPI description, made from the schemas the routes validate with (GET /v1/openapi.json, public: it holds no secret).
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'muster',
        version: MUSTER_VERSION,
        description: "muster's manager API: join tokens, node certificates that renew themselves, nodes, the root CA and its CRLs (README: API).",
      },
      components: { securitySchemes: { clusterCertificate: MUTUAL_TLS } },
    },
    transform: ({ schema, url, route }) => {
      const allow = (route.config as { allow?: readonly string[] } | undefined)?.allow;
      const described = { ...(schema ?? {}) } as Record<string, unknown>;
      if (allow !== undefined) {
        described.security = [{ clusterCertificate: [] }];
        described.description = `${typeof described.description === 'string' ? `${described.description} ` : ''}Callers: ${allow.join(', ')} certificates.`;
      }
      return { schema: described as typeof schema, url };
    },
  });
  await app.register(openapiRoutes, { services });
  await app.register(healthRoutes, { services });
  await app.register(caRoutes, { services });
  await app.register(nodeRoutes, { services });
  await app.register(clusterRoutes, { services });
  await app.register(metricsRoutes, { services });
  // Each endpoint of the route table has its handler: one without is a manager that does not start, not a 404 in production.
  const missing = missingEndpoints(endpoints);
  if (missing.length > 0) throw new Error(`endpoints of api/routes.ts without a handler: ${missing.join(', ')}`);
  return app;
}

/** OpenAPI 3.1's mutual-TLS security scheme (openapi-types knows only 3.0's, hence the cast). */
const MUTUAL_TLS = {
  type: 'mutualTLS',
  description: 'a client certificate from the cluster: a node (manager or worker) or an API user, as the route allows',
} as unknown as { type: 'http'; scheme: 'mutual-tls' };

/** The app type {@link buildApp} returns. */
export type MusterApp = Awaited<ReturnType<typeof buildApp>>;

/** Swaps the server's certificate (after the manager's own renewal, or a new root); new connections use it. */
export function updateServerCertificate(app: MusterApp, tls: ServerTls, trust: TrustFacts, now: number): void {
  app.server.setSecureContext(tlsOptions(tls, trust, now));
}
