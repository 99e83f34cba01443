/**
 * The one HTTPS JSON transport every muster component uses to call another
 * over the network: the API client (agents and the CLI to managers), the
 * cfssl signer (managers to an external CA) and the benchmarks. It sits on
 * Node's own http/https agents: connection pooling, keep-alive, per-request
 * timeouts and TLS options per dispatcher. (It sat on undici, whose ~110
 * modules were the largest part of a client command's start-up: issue 29.)
 */
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import type { Socket } from 'node:net';
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
  /**
   * The client certificate may change while connections stay open (a node's renewal: the manager lets the
   * renewed certificate speak on the connection it was issued on). No TLS session is then resumed: a
   * resumed session would speak for the certificate of the handshake it came from.
   */
  renewable?: boolean;
}

/** A pool of connections with one TLS identity (or to one local socket); {@link send} sends over it. */
export class Dispatcher {
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly requests = new Set<ClientRequest>();
  private closed = false;
  private plain: HttpAgent | undefined;

  /** @internal */
  constructor(
    readonly agent: HttpAgent,
    /** Plain HTTP over this Unix socket (`tls` unused). */
    readonly socketPath: string | undefined,
    /** TCP connect plus TLS handshake, at most. */
    readonly connectTimeoutMs: number,
    private readonly plainOptions: { keepAlive: boolean; timeout: number; maxSockets: number },
  ) {}

  /** @internal The pool for http:// URLs (an external CA may be served without TLS). */
  get plainAgent(): HttpAgent {
    this.plain ??= new HttpAgent(this.plainOptions);
    return this.plain;
  }

  /** @internal Whether requests may still be sent. */
  get open(): boolean {
    return !this.closed;
  }

  /** New connections present this certificate and key (a renewal); the connections open now keep theirs. */
  useIdentity(tls: TransportTls & { cert: string; key: string }): void {
    if (!(this.agent instanceof RenewableAgent)) throw new TypeError('transport: useIdentity needs a renewable dispatcher');
    this.agent.identity = secureContextOf(tls);
  }

  /** @internal Counts a request in, so close() waits for it and destroy() fails it (even one still waiting for a connection). */
  track<T>(request: ClientRequest, pending: Promise<T>): Promise<T> {
    this.requests.add(request);
    this.inFlight.add(pending);
    const done = (): void => {
      this.inFlight.delete(pending);
      this.requests.delete(request);
    };
    pending.then(done, done);
    return pending;
  }

  /** Closes the connections once the requests on them have answered. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    this.agent.destroy();
    this.plain?.destroy();
  }

  /** Closes the connections now, failing requests still waiting. */
  async destroy(): Promise<void> {
    this.closed = true;
    for (const request of this.requests) request.destroy(Object.assign(new Error('the connection was closed by this side'), { code: 'DISPATCHER_DESTROYED' }));
    this.agent.destroy();
    this.plain?.destroy();
    await Promise.allSettled([...this.inFlight]);
  }
}

/** The TLS context of a dispatcher, built once per identity: OpenSSL 3 re-parses roots and keys for every context. */
function secureContextOf(tls: TransportTls): SecureContext {
  return createSecureContext({
    minVersion: 'TLSv1.2',
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls.cert === undefined || tls.key === undefined ? {} : { cert: tls.cert, key: tls.key }),
  });
}

/**
 * An agent whose new connections present the identity of the latest renewal.
 * The pool keeps the name it was made with: Node 24's agent names a pool by
 * its secure context too, so changing the agent's options would open a new
 * pool (and a new connection beside the kept one) at every renewal.
 */
class RenewableAgent extends HttpsAgent {
  constructor(
    options: ConstructorParameters<typeof HttpsAgent>[0],
    public identity: SecureContext,
  ) {
    super(options);
  }

  override createConnection(options: object, callback?: unknown): ReturnType<HttpsAgent['createConnection']> {
    const create = HttpsAgent.prototype.createConnection as (this: HttpsAgent, ...args: unknown[]) => ReturnType<HttpsAgent['createConnection']>;
    return create.call(this, { ...options, secureContext: this.identity }, callback);
  }
}

/** A pool of connections with one TLS identity (or a renewable one, see DispatcherOptions.renewable). */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const { tls } = options;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  // An idle connection is closed after keepAliveMs (the agent's socket timeout applies to idle sockets only: send() times requests itself).
  const idle = { keepAlive: true, timeout: Math.max(options.keepAliveMs ?? 30_000, 1) };
  if (options.socketPath !== undefined) {
    return new Dispatcher(new HttpAgent({ ...idle, maxSockets: 1 }), options.socketPath, connectTimeoutMs, { ...idle, maxSockets: 1 });
  }
  const secureContext = secureContextOf(tls);
  const agentOptions = {
    ...idle,
    maxSockets: options.connections ?? 8,
    secureContext,
    rejectUnauthorized: tls.rejectUnauthorized ?? true,
    ...(tls.checkServerIdentity === undefined ? {} : { checkServerIdentity: tls.checkServerIdentity }),
  };
  const agent = options.renewable === true ? new RenewableAgent({ ...agentOptions, maxCachedSessions: 0 }, secureContext) : new HttpsAgent(agentOptions);
  return new Dispatcher(agent, undefined, connectTimeoutMs, { ...idle, maxSockets: options.connections ?? 8 });
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
  /** Cancels the request (and so its connection, which the answer would have ended): a node's parked long poll, to let another request through. */
  signal?: AbortSignal;
}

/** A raw answer. */
export interface TransportResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** How a request failed before any answer came back. */
export type TransportFailure = 'unreachable' | 'timeout' | 'tls' | 'aborted';

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
  if (error instanceof TransportError) return error;
  if ((error as { code?: unknown }).code === 'ABORT_ERR') return new TransportError('aborted', 'ABORT_ERR', error);
  const code = String((error as { code?: unknown }).code ?? (error as Error).name ?? 'ERROR');
  if (TIMEOUT_CODE.test(code)) return new TransportError('timeout', code, error);
  if (TLS_CODE.test(code)) return new TransportError('tls', code, error);
  return new TransportError('unreachable', code, error);
}

/** The error a timed-out request is destroyed with: `code` is CONNECT_TIMEOUT, HEADERS_TIMEOUT or BODY_TIMEOUT. */
function timeoutError(code: string, ms: number): TransportError {
  return new TransportError('timeout', code, Object.assign(new Error(`${code.toLowerCase().replace('_', ' ')} after ${ms} ms`), { code }));
}

/** Connections whose connect (and handshake) is done. */
const connected = new WeakSet<Socket>();

function exchange(dispatcher: Dispatcher, req: TransportRequest, payload: Buffer | undefined): Promise<TransportResponse> {
  if (!dispatcher.open) return Promise.reject(new TransportError('unreachable', 'DISPATCHER_CLOSED', new Error('the dispatcher is closed')));
  if (req.signal?.aborted === true) return Promise.reject(new TransportError('aborted', 'ABORT_ERR', new Error('the request was cancelled')));
  const url = new URL(req.url);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError(`transport: ${url.protocol} is not http or https`);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (payload !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(payload.length) });
  // `fresh`: the connection closes after this answer, so the next request makes a new one.
  if (req.fresh === true) headers.connection = 'close';
  // Node's own `signal`: an abort destroys the request with an AbortError (code ABORT_ERR), and its socket with it.
  const options = { method: req.method, headers, path: `${url.pathname}${url.search}`, ...(req.signal === undefined ? {} : { signal: req.signal }) };
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const tls = dispatcher.socketPath === undefined && url.protocol === 'https:';
  // A request muster built wrongly throws here, to the caller: a bug, not an unreachable peer.
  const request =
    dispatcher.socketPath !== undefined
      ? httpRequest({ ...options, agent: dispatcher.agent, socketPath: dispatcher.socketPath })
      : tls
        ? httpsRequest({ ...options, agent: dispatcher.agent, host, port: Number(url.port === '' ? 443 : url.port) })
        : httpRequest({ ...options, agent: dispatcher.plainAgent, host, port: Number(url.port === '' ? 80 : url.port) });
  const pending = new Promise<TransportResponse>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const fail = (error: unknown): void => {
      clearTimeout(timer);
      reject(error);
    };
    const arm = (code: string, ms: number): void => {
      clearTimeout(timer);
      timer = setTimeout(() => request.destroy(timeoutError(code, ms)), ms);
    };
    // The connect timeout runs until the handshake is done on a new connection; then the answer's headers have timeoutMs.
    // A request queued for a busy pool is handed a connection that is up but not marked reused: `connected` knows it.
    request.on('socket', (socket) => {
      if (request.reusedSocket || connected.has(socket)) return arm('HEADERS_TIMEOUT', req.timeoutMs);
      arm('CONNECT_TIMEOUT', dispatcher.connectTimeoutMs);
      socket.once(tls ? 'secureConnect' : 'connect', () => {
        connected.add(socket);
        arm('HEADERS_TIMEOUT', req.timeoutMs);
      });
    });
    request.on('error', fail);
    request.on('response', (response: IncomingMessage) => {
      const chunks: Buffer[] = [];
      // The body may pause at most timeoutMs between chunks.
      arm('BODY_TIMEOUT', req.timeoutMs);
      response.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        arm('BODY_TIMEOUT', req.timeoutMs);
      });
      response.on('error', fail);
      response.on('close', () => {
        if (!response.complete) fail(Object.assign(new Error('the connection closed before the answer was complete'), { code: 'ECONNRESET' }));
      });
      response.on('end', () => {
        clearTimeout(timer);
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) });
      });
    });
  });
  request.end(payload);
  return dispatcher.track(request, pending);
}

/** Sends one request; resolves with any HTTP answer, throws TransportError when none came (or the caller's own checkServerIdentity error). */
export async function send(req: TransportRequest): Promise<TransportResponse> {
  const payload = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(JSON.stringify(req.body));
  const pending = exchange(req.dispatcher, req, payload);
  try {
    return await pending;
  } catch (error) {
    // The caller's own identity check (checkServerIdentity) surfaces as itself.
    if (isMusterError(error)) throw error;
    throw classify(error);
  }
}
