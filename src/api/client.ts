/**
 * The client of the manager API (DESIGN §4), used by agents (join, renew,
 * self) and the CLI (admin routes): one generic call over the route table
 * (routes.ts), on the verified connection with failover of connection.ts.
 * Only `fetchRootCaUnverified` and `fetchCrossSignedUnverified` run
 * unverified, for what the caller checks itself before it trusts it.
 */
import { MusterError } from '../core/errors.js';
import type { Checked } from '../core/schema-check.js';
import { ManagerConnection, type PeerSeen } from './connection.js';
// The answers' schemas in plain form: TypeBox (schemas.ts) would be most of a client command's start-up.
import * as Plain from './plain-schemas.js';
import {
  API,
  MAX_SESSION_WAIT_S,
  pathOf,
  type BodyOf,
  type Endpoint,
  type JsonRoute,
  type ParamsOf,
  type QueryOf,
  type RawRoute,
  type ResponseOf,
} from './routes.js';
import type { CertificateView, Health, NodeView, SelfResponse } from './schemas.js';

export { ManagerConnection, revokedManager, type ClientOptions, type ClientTls, type PeerSeen } from './connection.js';

/** What a call of endpoint K sends: its path parameters and body when it has them, and its query. */
export type CallInput<K extends JsonRoute | RawRoute> = (ParamsOf<K> extends undefined ? { params?: undefined } : { params: ParamsOf<K> }) &
  (QueryOf<K> extends undefined ? { query?: undefined } : { query?: QueryOf<K> }) &
  (BodyOf<K> extends undefined ? { body?: undefined } : { body: BodyOf<K> });

/** How one call runs. */
export interface CallOptions {
  /** This call's deadline, when it differs from the client's (a long poll, a backup). */
  timeoutMs?: number;
  /** Cancels the call (a node's parked long poll, cut short for another request on its one connection). */
  signal?: AbortSignal;
}

/** The arguments after the endpoint's name: its input, optional when it needs none. */
type CallArgs<K extends JsonRoute | RawRoute> =
  Record<string, never> extends CallInput<K> ? [input?: CallInput<K>, options?: CallOptions] : [input: CallInput<K>, options?: CallOptions];

const PLAIN = Plain as unknown as Record<string, Checked<unknown> | undefined>;

/** The path with its parameters filled in and its query string. */
function target(endpoint: Endpoint, input: { params?: object; query?: object } | undefined): string {
  const path = pathOf(endpoint, input?.params);
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(input?.query ?? {})) if (value !== undefined) query.set(name, String(value));
  const search = query.toString();
  return search === '' ? path : `${path}?${search}`;
}

/** Talks to the managers of one cluster. */
export class ApiClient extends ManagerConnection {
  /** Calls endpoint `name` of the route table on a manager, moving to the next one when this one cannot serve; resolves to its checked answer. */
  async call<K extends JsonRoute>(name: K, ...[input, options]: CallArgs<K>): Promise<ResponseOf<K>> {
    const endpoint: Endpoint = API[name];
    const plain = endpoint.response === undefined ? undefined : PLAIN[endpoint.response.name];
    if (plain === undefined) throw new MusterError('INTERNAL', `no plain schema for the answer of ${name}`);
    return this.withFailover(endpoint.method, target(endpoint, input), plain as Checked<ResponseOf<K>>, input?.body, options?.timeoutMs, options?.signal);
  }

  /** The bytes endpoint `name` answers (a PEM, a CRL), from the manager this client talks to now, over the verified connection. */
  async bytes<K extends RawRoute>(name: K, ...[input, options]: CallArgs<K>): Promise<Buffer> {
    const endpoint: Endpoint = API[name];
    const response = await this.exchange(this.verified(), endpoint.method, target(endpoint, input), undefined, false, options?.timeoutMs);
    if (response.status !== 200) throw this.errorFrom(response);
    return response.body;
  }

  /**
   * GET /v1/crl (DER) from the manager this client talks to, over the
   * verified connection, with the certificate that manager presented; the
   * caller verifies both (agent/crl.ts). `der` is undefined when the manager
   * answered CRL_UNAVAILABLE (an external CA signs).
   */
  async fetchCrl(): Promise<{ der: Buffer | undefined; peer: PeerSeen | undefined }> {
    const response = await this.exchange(this.verified(), 'GET', API.crl.path, undefined);
    const peer = this.peer;
    if (response.status === 200) return { der: response.body, peer };
    const refused = this.errorFrom(response);
    if (refused.code === 'CRL_UNAVAILABLE') return { der: undefined, peer };
    throw refused;
  }

  /** GET /v1/ca without verifying the server: the caller must compare the digest of these exact bytes with its token before trusting them. */
  fetchRootCaUnverified(): Promise<Buffer> {
    return this.unverifiedGet(API.rootCa.path);
  }

  /** GET /v1/ca/cross-signed without verifying the server: the caller checks each certificate against a root it trusts. */
  fetchCrossSignedUnverified(): Promise<Buffer> {
    return this.unverifiedGet(API.crossSigned.path);
  }

  /** GET /healthz of the manager this client talks to now (no failover: it asks about this one); 503 is an answer too. */
  async health(): Promise<Health> {
    const response = await this.exchange(this.verified(), 'GET', API.health.path, undefined);
    if (response.status !== 200 && response.status !== 503) throw this.errorFrom(response);
    return this.decode(response, Plain.Health, 'GET', API.health.path);
  }

  /**
   * GET /v1/nodes/self; with `waitMs`, a long poll on the kept-alive
   * connection (the session): the manager answers at once when the node must
   * act, else when something changes or after the wait.
   */
  self(waitMs?: number, signal?: AbortSignal): Promise<SelfResponse> {
    if (waitMs === undefined) return this.call('self', {}, signal === undefined ? {} : { signal });
    const seconds = Math.max(1, Math.min(MAX_SESSION_WAIT_S, Math.round(waitMs / 1000)));
    return this.call(
      'self',
      { query: { wait: String(seconds) } },
      { timeoutMs: seconds * 1000 + (this.options.timeoutMs ?? 15_000), ...(signal === undefined ? {} : { signal }) },
    );
  }

  /** Every node, one page at a time as the pages arrive (`pageSize` at most NODES_PAGE.max). */
  async *nodePages(options: { pageSize?: number; all?: boolean } = {}): AsyncGenerator<NodeView[]> {
    let after: string | undefined;
    do {
      const query = {
        ...(options.pageSize === undefined ? {} : { limit: String(options.pageSize) }),
        ...(after === undefined ? {} : { after }),
        ...(options.all === true ? { all: '1' as const } : {}),
      };
      const page = await this.call('listNodes', { query });
      yield page.nodes;
      after = page.next;
    } while (after !== undefined);
  }

  /** Every issued certificate, one page at a time as the pages arrive (`pageSize` at most NODES_PAGE.max). */
  async *certificatePages(options: { pageSize?: number } = {}): AsyncGenerator<CertificateView[]> {
    let after: string | undefined;
    do {
      const query = { ...(options.pageSize === undefined ? {} : { limit: String(options.pageSize) }), ...(after === undefined ? {} : { after }) };
      const page = await this.call('certificates', { query });
      yield page.certificates;
      after = page.next;
    } while (after !== undefined);
  }
}
