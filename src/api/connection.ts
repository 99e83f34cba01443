/**
 * The connection to the managers under the API client (client.ts): it
 * verifies managers against the pinned root and insists on a manager
 * certificate; given several managers it sticks to one that answers and
 * moves to another when one cannot be reached or answers that it cannot
 * serve now (503), so a node survives losing a manager; and it turns error
 * answers and transport failures into the manager's codes.
 */
import type { PeerCertificate } from 'node:tls';
import { formatDuration } from '../core/duration.js';
import { MusterError, isErrorCode, isMusterError } from '../core/errors.js';
import { ROLE_OU } from '../core/roles.js';
import { checkSchema, type Checked } from '../core/schema-check.js';
import { API } from './routes.js';
import { TransportError, createDispatcher, send, type Dispatcher, type TransportResponse } from './transport.js';

/** TLS material for a client. */
export interface ClientTls {
  /** The pinned root bundle; required for every call but the unverified fetches (client.ts). */
  rootPem?: string;
  /** Client certificate and key (mTLS): a node's, a manager's, or an API user's. */
  certPem?: string;
  keyPem?: string;
}

/** Options for {@link ApiClient}. */
export interface ClientOptions {
  /** Managers as host:port; the first is tried first. */
  managers: readonly string[];
  tls: ClientTls;
  /** Per-request timeout. */
  timeoutMs?: number;
  /** A fresh TLS connection per request (benchmarks measuring handshakes); connections are kept by default. */
  fresh?: boolean;
  /** Serials on the cluster's CRL as this client last fetched it: a manager presenting one is refused. */
  revoked?: () => ReadonlySet<string> | undefined;
  /**
   * Connections kept per manager (default 8). A node in session uses 1: every
   * request it makes (long polls, CRL fetches, renewals) waits its turn on the
   * one kept-alive connection instead of opening another with a full TLS
   * handshake (issue 31).
   */
  connections?: number;
  /** Talk to the manager on this host over its local socket (plain HTTP; the socket's folder is the guard) instead of `managers`. */
  socketPath?: string;
  /** A node's own client: its certificate changes at each renewal while its connection stays (useIdentity). */
  renewable?: boolean;
}

/** What the last verified connection's manager presented. */
export interface PeerSeen {
  /** Upper-case hex. */
  serial: string;
  /** The certificate, DER. */
  raw: Buffer;
}

/**
 * Whether another manager may be asked after `error`: when this one refused
 * before doing anything (503 from its store, no connection, the wrong
 * certificate before a byte was sent), or for a read whose answer was lost.
 */
function mayTryAnother(error: unknown, method: string): boolean {
  if (!isMusterError(error)) return false;
  switch (error.code) {
    case 'STORE_UNAVAILABLE':
    case 'NOT_A_MANAGER':
    case 'CERT_REVOKED_BY_CRL':
      return true;
    case 'MANAGER_UNREACHABLE':
      return error.details?.unsent === true || method === 'GET';
    default:
      return false;
  }
}

function peerOu(cert: PeerCertificate): string | undefined {
  const ou = cert.subject?.OU;
  return Array.isArray(ou) ? undefined : ou;
}

/** The pinned root plus a manager OU is a server's identity (SwarmKit's model): a worker's certificate, though it chains to the root, may not serve. */
function requireManager(_host: string, cert: PeerCertificate): Error | undefined {
  return peerOu(cert) === ROLE_OU.manager
    ? undefined
    : new MusterError('NOT_A_MANAGER', 'the server presented a certificate that is not a manager certificate of this cluster');
}

/** The refusal of a manager whose certificate the cluster revoked (a removed or demoted manager). */
export function revokedManager(address: string): MusterError {
  return new MusterError('CERT_REVOKED_BY_CRL', `the server at ${address} presented a manager certificate that the cluster has revoked`, {
    details: { unsent: true },
  });
}

/** Splits host:port (IPv6 in brackets) into a URL origin. */
function origin(address: string): string {
  return `https://${address}`;
}

/** What a failed TLS verification of a manager means, in words a person can act on. */
function tlsRefusal(error: TransportError, address: string): MusterError {
  const options = { cause: error.cause, details: { unsent: true } };
  switch (error.code) {
    case 'CERT_NOT_YET_VALID':
      return new MusterError(
        'CLOCK_SKEW',
        `the manager at ${address} presented a certificate that is not valid yet by this machine's clock: this machine's clock is behind the manager's`,
        options,
      );
    case 'CERT_HAS_EXPIRED':
      return new MusterError(
        'CLOCK_SKEW',
        `the manager at ${address} presented a certificate that has expired by this machine's clock: this machine's clock is ahead of the manager's, or the manager has been down for long`,
        options,
      );
    case 'INVALID_PURPOSE':
      return new MusterError(
        'NOT_A_MANAGER',
        `the server at ${address} presented a certificate that may not serve TLS (an API-user certificate?), not a manager certificate`,
        options,
      );
    default:
      return new MusterError('NOT_A_MANAGER', `the server at ${address} did not present a certificate from this cluster's root (${error.code})`, options);
  }
}

/**
 * A clock-skew refusal with the size of the skew, read from the manager's
 * HTTP Date header over one unverified request. Nothing from that answer is
 * trusted but the time it names, and only to word the error; when the
 * manager does not answer it, the refusal stays as it was.
 */
async function measuredSkew(refusal: MusterError, address: string): Promise<MusterError> {
  const dispatcher = createDispatcher({ tls: { rejectUnauthorized: false }, connectTimeoutMs: 3_000 });
  try {
    const response = await send({ dispatcher, url: `${origin(address)}${API.health.path}`, method: 'GET', body: undefined, timeoutMs: 3_000, fresh: true });
    const date = response.headers.date;
    const theirs = typeof date === 'string' ? Date.parse(date) : Number.NaN;
    if (Number.isNaN(theirs)) return refusal;
    const skewMs = theirs - Date.now();
    const by = formatDuration(Math.max(Math.round(Math.abs(skewMs) / 60_000), 1) * 60_000);
    const words = skewMs > 0 ? `behind the manager's by about ${by}` : `ahead of the manager's by about ${by}`;
    return new MusterError('CLOCK_SKEW', `${refusal.message.replace(/: this machine's clock is .*$/, '')}: this machine's clock is ${words}`, {
      cause: refusal.cause,
      ...(refusal.details === undefined ? {} : { details: refusal.details }),
    });
  } catch {
    return refusal;
  } finally {
    await dispatcher.close();
  }
}

/** Verified requests to the managers of one cluster, with failover. */
export class ManagerConnection {
  protected readonly managers: string[];
  private current = 0;
  private dispatcher: Dispatcher | undefined;
  protected peer: PeerSeen | undefined;

  constructor(protected options: ClientOptions) {
    if (options.managers.length === 0) throw new MusterError('ADDRESS_INVALID', 'no manager address to talk to');
    this.managers = [...options.managers];
  }

  /** The manager this client talks to now. */
  get address(): string {
    return this.managers[this.current] ?? this.managers[0]!;
  }

  /** Closes kept-alive connections once the requests on them have answered. */
  async close(): Promise<void> {
    const dispatcher = this.dispatcher;
    this.dispatcher = undefined;
    await dispatcher?.close();
  }

  /**
   * A renewal: requests go on over the open connection, where the manager
   * lets the renewed certificate speak (it issued it there); a connection
   * opened from now on presents it in its handshake.
   */
  useIdentity(certPem: string, keyPem: string): void {
    this.options = { ...this.options, tls: { ...this.options.tls, certPem, keyPem } };
    const { rootPem } = this.options.tls;
    this.dispatcher?.useIdentity({ cert: certPem, key: keyPem, ...(rootPem === undefined ? {} : { ca: rootPem }) });
  }

  /** Closes the connections now, failing requests still waiting (a session's long poll, when the node stops). */
  async destroy(): Promise<void> {
    const dispatcher = this.dispatcher;
    this.dispatcher = undefined;
    await dispatcher?.destroy();
  }

  protected verified(): Dispatcher {
    const { tls } = this.options;
    if (this.options.socketPath !== undefined) {
      this.dispatcher ??= createDispatcher({ tls: {}, socketPath: this.options.socketPath });
      return this.dispatcher;
    }
    if (tls.rootPem === undefined) throw new MusterError('INTERNAL', 'ApiClient: a pinned root is required');
    this.dispatcher ??= createDispatcher({
      ...(this.options.connections === undefined ? {} : { connections: this.options.connections }),
      ...(this.options.renewable === true ? { renewable: true } : {}),
      tls: {
        ca: tls.rootPem,
        checkServerIdentity: (host: string, cert: PeerCertificate) => this.checkManager(host, cert),
        ...(tls.certPem === undefined || tls.keyPem === undefined ? {} : { cert: tls.certPem, key: tls.keyPem }),
      },
    });
    return this.dispatcher;
  }

  /** A manager's certificate: the manager OU, and not on the CRL this client holds. */
  private checkManager(host: string, cert: PeerCertificate): Error | undefined {
    const refused = requireManager(host, cert);
    if (refused !== undefined) return refused;
    this.peer = { serial: cert.serialNumber.toUpperCase(), raw: cert.raw };
    if (this.options.revoked?.()?.has(this.peer.serial) === true) return revokedManager(this.address);
    return undefined;
  }

  /** A GET on a fresh connection that verifies nothing: only for what the caller checks itself (the root, cross-signed roots). */
  protected async unverifiedGet(path: string): Promise<Buffer> {
    const dispatcher = createDispatcher({ tls: { rejectUnauthorized: false } });
    try {
      const response = await this.exchange(dispatcher, 'GET', path, undefined, true);
      if (response.status !== 200) throw this.errorFrom(response);
      return response.body;
    } finally {
      await dispatcher.close();
    }
  }

  /** One verified call, moving to the next manager when this one cannot serve. */
  protected async withFailover<T>(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    path: string,
    schema: Checked<T>,
    body?: unknown,
    timeoutMs?: number,
    signal?: AbortSignal,
  ): Promise<T> {
    let lastError: unknown;
    for (let tried = 0; tried < this.managers.length; tried++) {
      try {
        const response = await this.exchange(this.verified(), method, path, body, false, timeoutMs, signal);
        if (response.status < 200 || response.status >= 300) throw this.errorFrom(response);
        return this.decode(response, schema, method, path);
      } catch (error) {
        lastError = error;
        if (this.managers.length === 1 || signal?.aborted === true || !mayTryAnother(error, method)) throw error;
        this.current = (this.current + 1) % this.managers.length;
      }
    }
    throw lastError;
  }

  protected decode<T>(response: TransportResponse, schema: Checked<T>, method: string, path: string): T {
    let parsed: unknown;
    try {
      parsed = JSON.parse(response.body.toString('utf8'));
    } catch {
      throw new MusterError('MANAGER_ERROR', `the manager sent a response that is not JSON (HTTP ${response.status})`);
    }
    if (!checkSchema(schema, parsed)) throw new MusterError('MANAGER_ERROR', `the manager's answer to ${method} ${path.split('?')[0]} does not match the API`);
    return parsed;
  }

  protected async exchange(
    dispatcher: Dispatcher,
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    path: string,
    body: unknown,
    fresh = false,
    timeoutMs?: number,
    signal?: AbortSignal,
  ): Promise<TransportResponse> {
    const address = this.address;
    try {
      const base = this.options.socketPath === undefined ? origin(address) : 'http://localhost';
      return await send({
        dispatcher,
        url: `${base}${path}`,
        method,
        body,
        timeoutMs: timeoutMs ?? this.options.timeoutMs ?? 15_000,
        fresh: fresh || this.options.fresh === true,
        ...(signal === undefined ? {} : { signal }),
      });
    } catch (error) {
      const refused = this.transportError(error, address);
      throw isMusterError(refused, 'CLOCK_SKEW') ? await measuredSkew(refused, address) : refused;
    }
  }

  /** Turns an error answer into the manager's own code where it sent one. */
  protected errorFrom(response: TransportResponse): MusterError {
    let body: { code?: unknown; message?: unknown; hint?: unknown } = {};
    try {
      body = JSON.parse(response.body.toString('utf8')) as typeof body;
    } catch {
      // not JSON: fall through
    }
    const message = typeof body.message === 'string' ? body.message : `HTTP ${response.status}`;
    const hint = typeof body.hint === 'string' ? body.hint : undefined;
    const retry = response.headers['retry-after'];
    const details = typeof retry === 'string' && /^\d+$/.test(retry) ? { retryAfterSeconds: Number(retry) } : undefined;
    if (isErrorCode(body.code))
      return new MusterError(body.code, message, { ...(hint === undefined ? {} : { hint }), ...(details === undefined ? {} : { details }) });
    return new MusterError('MANAGER_ERROR', `the manager at ${this.address} answered ${message}`);
  }

  private transportError(error: unknown, address: string): MusterError {
    if (isMusterError(error)) return error;
    if (error instanceof TransportError) {
      // Only this side cancels (a parked long poll cut short), and it knows it did: no code of its own.
      if (error.failure === 'aborted') return new MusterError('MANAGER_UNREACHABLE', 'the request was cancelled by this side', { cause: error.cause });
      if (error.failure === 'tls') return tlsRefusal(error, address);
      if (error.failure === 'timeout')
        return new MusterError('MANAGER_UNREACHABLE', `the manager at ${address} did not answer in time`, { cause: error.cause });
      // Refused or reset before a connection was made: the request was never sent.
      const unsent = /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|CONNECT/.test(error.code);
      return new MusterError('MANAGER_UNREACHABLE', `cannot reach the manager at ${address}: ${error.code}`, { cause: error.cause, details: { unsent } });
    }
    return new MusterError('MANAGER_UNREACHABLE', `cannot reach the manager at ${address}: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
}
