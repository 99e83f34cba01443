/**
 * The HTTPS client every muster component uses to talk to a manager: the
 * agent (join, renew, self) and the CLI (admin routes). It verifies the
 * manager against the pinned root and insists on a manager certificate;
 * only `fetchRootCa` runs unverified, before the root is pinned.
 */
import { request as httpsRequest, Agent } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import type { TSchema, Static } from 'typebox';
import Value from 'typebox/value';
import { MusterError, isErrorCode } from '../core/errors.js';
import {
  ClusterView,
  JoinTokens,
  NodeCertificateResponse,
  NodeList,
  NodeView,
  ROUTES,
  SelfResponse,
  UserResponse,
  UserRevoked,
  type JoinRequest,
} from './schemas.js';

/** TLS material for a client. */
export interface ClientTls {
  /** The pinned root; required for every call but fetchRootCa. */
  rootPem?: string;
  /** Client certificate and key (mTLS): a node's, a manager's, or an API user's. */
  certPem?: string;
  keyPem?: string;
}

/** Options for {@link ApiClient}. */
export interface ClientOptions {
  /** The manager, as host:port. */
  address: string;
  tls: ClientTls;
  /** Per-request timeout. */
  timeoutMs?: number;
  /** Reuse connections (the CLI and agents do); benchmarks that want a handshake per call turn it off. */
  keepAlive?: boolean;
}

/** A raw HTTP answer. */
interface RawResponse {
  status: number;
  body: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

const MANAGER_OU = 'swarm-manager';

function peerOu(cert: PeerCertificate): string | undefined {
  const ou = cert.subject?.OU;
  return Array.isArray(ou) ? undefined : ou;
}

/** Talks to one manager. */
export class ApiClient {
  private readonly agent: Agent;
  private readonly host: string;
  private readonly port: number;

  constructor(private readonly options: ClientOptions) {
    const { host, port } = splitAddress(options.address);
    this.host = host;
    this.port = port;
    this.agent = new Agent({ keepAlive: options.keepAlive ?? true, maxSockets: 8 });
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  /**
   * GET /v1/ca without verifying the server: the caller must compare the
   * digest of these exact bytes with its token before trusting them.
   */
  async fetchRootCa(): Promise<Buffer> {
    const response = await this.send('GET', ROUTES.ca, undefined, { verify: false });
    if (response.status !== 200) throw this.errorFrom(response);
    return response.body;
  }

  /** POST /v1/join */
  join(body: JoinRequest): Promise<NodeCertificateResponse> {
    return this.call('POST', ROUTES.join, NodeCertificateResponse, body);
  }

  /** POST /v1/renew (mTLS with the node's current certificate). */
  renew(csr: string): Promise<NodeCertificateResponse> {
    return this.call('POST', ROUTES.renew, NodeCertificateResponse, { csr });
  }

  /** GET /v1/nodes/self */
  self(): Promise<SelfResponse> {
    return this.call('GET', ROUTES.self, SelfResponse);
  }

  /** DELETE /v1/nodes/self: the node leaves. */
  leave(): Promise<NodeView> {
    return this.call('DELETE', ROUTES.self, NodeView);
  }

  /** GET /v1/cluster */
  cluster(includeTokens = false): Promise<ClusterView> {
    return this.call('GET', `${ROUTES.cluster}${includeTokens ? '?tokens=1' : ''}`, ClusterView);
  }

  /** PATCH /v1/cluster */
  updateCluster(patch: { certExpiry?: string; externalCAs?: { url: string; cacertPem?: string; authKeyHex?: string }[] }): Promise<ClusterView> {
    return this.call('PATCH', ROUTES.cluster, ClusterView, patch);
  }

  /** GET /v1/join-tokens */
  joinTokens(): Promise<JoinTokens> {
    return this.call('GET', ROUTES.joinTokens, JoinTokens);
  }

  /** POST /v1/join-tokens/{role}/rotate */
  rotateToken(role: 'worker' | 'manager'): Promise<JoinTokens> {
    return this.call('POST', ROUTES.rotate.replace(':role', role), JoinTokens);
  }

  /** GET /v1/nodes */
  async listNodes(): Promise<NodeView[]> {
    return (await this.call('GET', ROUTES.nodes, NodeList)).nodes;
  }

  /** GET /v1/nodes/{id} */
  getNode(id: string): Promise<NodeView> {
    return this.call('GET', ROUTES.node.replace(':id', encodeURIComponent(id)), NodeView);
  }

  /** DELETE /v1/nodes/{id} */
  removeNode(id: string, force: boolean): Promise<NodeView> {
    return this.call('DELETE', `${ROUTES.node.replace(':id', encodeURIComponent(id))}${force ? '?force=1' : ''}`, NodeView);
  }

  /** POST /v1/nodes/{id}/promote or /demote */
  setRole(id: string, role: 'worker' | 'manager'): Promise<NodeView> {
    const route = role === 'manager' ? ROUTES.promote : ROUTES.demote;
    return this.call('POST', route.replace(':id', encodeURIComponent(id)), NodeView);
  }

  /** DELETE /v1/users/{name}: revokes every certificate of that API user. */
  revokeUser(name: string): Promise<UserRevoked> {
    return this.call('DELETE', ROUTES.user.replace(':name', encodeURIComponent(name)), UserRevoked);
  }

  /** POST /v1/users */
  createUser(name: string, csr: string): Promise<UserResponse> {
    return this.call('POST', ROUTES.users, UserResponse, { name, csr });
  }

  private async call<S extends TSchema>(method: string, path: string, schema: S, body?: unknown): Promise<Static<S>> {
    const response = await this.send(method, path, body, { verify: true });
    if (response.status < 200 || response.status >= 300) throw this.errorFrom(response);
    let parsed: unknown;
    try {
      parsed = JSON.parse(response.body.toString('utf8'));
    } catch {
      throw new MusterError('MANAGER_ERROR', `the manager sent a response that is not JSON (HTTP ${response.status})`);
    }
    if (!Value.Check(schema, parsed)) throw new MusterError('MANAGER_ERROR', `the manager's answer to ${method} ${path.split('?')[0]} does not match the API`);
    return parsed as Static<S>;
  }

  /** Turns an error answer into the manager's own code where it sent one. */
  private errorFrom(response: RawResponse): MusterError {
    let body: { code?: unknown; message?: unknown; hint?: unknown } = {};
    try {
      body = JSON.parse(response.body.toString('utf8')) as typeof body;
    } catch {
      // not JSON: fall through
    }
    const message = typeof body.message === 'string' ? body.message : `HTTP ${response.status}`;
    const hint = typeof body.hint === 'string' ? body.hint : undefined;
    const retry = response.headers['retry-after'];
    const details = typeof retry === 'string' ? { retryAfterSeconds: Number(retry) } : undefined;
    if (isErrorCode(body.code)) return new MusterError(body.code, message, { ...(hint === undefined ? {} : { hint }), ...(details === undefined ? {} : { details }) });
    return new MusterError('MANAGER_ERROR', `the manager answered ${message}`);
  }

  private send(method: string, path: string, body: unknown, mode: { verify: boolean }): Promise<RawResponse> {
    const { tls } = this.options;
    if (mode.verify && tls.rootPem === undefined) throw new Error('ApiClient: a pinned root is required');
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<RawResponse>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: mode.verify ? this.agent : false,
          timeout: this.options.timeoutMs ?? 15_000,
          minVersion: 'TLSv1.2',
          ...(mode.verify
            ? {
                ca: tls.rootPem,
                rejectUnauthorized: true,
                // The pinned root plus a manager OU is the server's identity (SwarmKit's
                // model): a worker's certificate, though it chains to the root, may not serve.
                checkServerIdentity: (_host: string, cert: PeerCertificate) =>
                  peerOu(cert) === MANAGER_OU ? undefined : new MusterError('NOT_A_MANAGER', 'the server presented a certificate that is not a manager certificate of this cluster'),
              }
            : { rejectUnauthorized: false }),
          ...(tls.certPem !== undefined && tls.keyPem !== undefined && mode.verify ? { cert: tls.certPem, key: tls.keyPem } : {}),
          headers: {
            accept: 'application/json',
            ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(payload.length) }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers }));
          res.on('error', (error) => reject(this.transportError(error)));
        },
      );
      req.on('timeout', () => req.destroy(new MusterError('MANAGER_UNREACHABLE', `the manager at ${this.options.address} did not answer in time`)));
      req.on('error', (error) => reject(this.transportError(error)));
      req.end(payload);
    });
  }

  private transportError(error: Error): MusterError {
    if (error instanceof MusterError) return error;
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (/CERT|SELF_SIGNED|UNABLE_TO|SIGNATURE|ERR_TLS/.test(code)) {
      return new MusterError('NOT_A_MANAGER', `the server at ${this.options.address} did not present a certificate from this cluster's root (${code})`, { cause: error });
    }
    return new MusterError('MANAGER_UNREACHABLE', `cannot reach the manager at ${this.options.address}: ${code || error.message}`, { cause: error });
  }
}

/** Splits host:port (IPv6 in brackets); the port defaults to 4377. */
function splitAddress(address: string): { host: string; port: number } {
  const match = /^\[([^\]]+)\](?::(\d+))?$/.exec(address) ?? /^([^:]+)(?::(\d+))?$/.exec(address);
  if (match === null) throw new MusterError('ADDRESS_INVALID', `invalid manager address ${address}`);
  return { host: match[1] ?? '', port: match[2] === undefined ? 4377 : Number(match[2]) };
}
