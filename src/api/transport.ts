/**
 * The one HTTPS JSON transport every muster component uses to call another
 * over the network: the API client (agents and the CLI to managers), the
 * cfssl signer (managers to an external CA) and the benchmarks. It sits on
 * undici: connection pooling, keep-alive, per-request timeouts and TLS
 * options per dispatcher, without a hand-written socket loop.
 */
import { createSecureContext, type PeerCertificate } from 'node:tls';
import { Agent, request, type Dispatcher } from 'undici';
import { isMusterError } from '../core/errors.js';

/** TLS settings of one dispatcher. */
export interface TransportTls {
  /** Roots to verify the server with; the system roots when absent. */
  ca?: string | string[];
  /** Client certificate chain and key (mTLS). */
  cert?: string;
  key?: string;
  /** False only for the one unverified fetch of a join (the root is then checked against the token). */
  rejectUnauthorized?: boolean;
  /** Decides whether the verified server certificate may serve (muster: a manager OU). */
  checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
}

/** Options of {@link createDispatcher}. */
export interface DispatcherOptions {
  tls: TransportTls;
  /** How long an idle connection is kept for reuse (a request with `fresh` closes its connection instead). */
  keepAliveMs?: number;
  /** Connections per origin at most. */
  connections?: number;
  /** TCP connect plus TLS handshake, at most. */
  connectTimeoutMs?: number;
  /** Plain HTTP over this Unix socket instead (a manager's local socket; `tls` is then unused). */
  socketPath?: string;
}

/** A pool of connections with one TLS identity. The TLS context is built once: OpenSSL 3 re-parses roots and keys for every context. */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const { tls } = options;
  if (options.socketPath !== undefined) {
    return new Agent({ connections: 1, connect: { socketPath: options.socketPath, timeout: options.connectTimeoutMs ?? 10_000 } });
  }
  const secureContext = createSecureContext({
    minVersion: 'TLSv1.2',
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls.cert === undefined || tls.key === undefined ? {} : { cert: tls.cert, key: tls.key }),
  });
  return new Agent({
    connections: options.connections ?? 8,
    keepAliveTimeout: Math.max(options.keepAliveMs ?? 30_000, 1),
    keepAliveMaxTimeout: Math.max(options.keepAliveMs ?? 30_000, 1_000),
    connect: {
      timeout: options.connectTimeoutMs ?? 10_000,
      secureContext,
      rejectUnauthorized: tls.rejectUnauthorized ?? true,
      ...(tls.checkServerIdentity === undefined ? {} : { checkServerIdentity: tls.checkServerIdentity }),
    },
  });
}

/** One request. */
export interface TransportRequest {
  dispatcher: Dispatcher;
  /** Full URL: https://host:port/path?query */
  url: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Sent as JSON unless it is already bytes. */
  body?: unknown;
  timeoutMs: number;
  /** Close the connection after this request (a fresh handshake for the next). */
  fresh?: boolean;
}

/** A raw answer. */
export interface TransportResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** How a request failed before any answer came back. */
export type TransportFailure = 'unreachable' | 'timeout' | 'tls';

/** A request that got no HTTP answer; `failure` says why, `code` is the underlying error code. */
export class TransportError extends Error {
  constructor(
    readonly failure: TransportFailure,
    readonly code: string,
    override readonly cause: unknown,
  ) {
    super(`${failure}: ${code}`);
    this.name = 'TransportError';
  }
}

/** OpenSSL's verification codes (as Node names them) and TLS protocol failures. */
const TLS_CODE = /CERT|SELF_SIGNED|UNABLE_TO|SIGNATURE|ERR_TLS|ERR_SSL|EPROTO|INVALID_PURPOSE|INVALID_CA|PATH_LENGTH|HOSTNAME_MISMATCH/;
const TIMEOUT_CODE = /TIMEOUT/;

function classify(error: unknown): TransportError {
  const code = String((error as { code?: unknown }).code ?? (error as Error).name ?? 'ERROR');
  // A request muster built wrongly is a bug, not an unreachable peer.
  if (code.startsWith('UND_ERR_INVALID')) throw error;
  if (TIMEOUT_CODE.test(code)) return new TransportError('timeout', code, error);
  if (TLS_CODE.test(code)) return new TransportError('tls', code, error);
  return new TransportError('unreachable', code, error);
}

/** Sends one request; resolves with any HTTP answer, throws TransportError when none came (or the caller's own checkServerIdentity error). */
export async function send(req: TransportRequest): Promise<TransportResponse> {
  const payload = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(JSON.stringify(req.body));
  try {
    const res = await request(req.url, {
      dispatcher: req.dispatcher,
      method: req.method,
      headers: {
        accept: 'application/json',
        ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(payload === undefined ? {} : { body: payload }),
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
      reset: req.fresh === true,
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  } catch (error) {
    // The caller's own identity check (checkServerIdentity) surfaces as itself.
    if (error instanceof TransportError || isMusterError(error)) throw error;
    throw classify(error);
  }
}
