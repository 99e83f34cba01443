/**
 * Signing through an external CA that speaks cfssl's API (docker swarm's
 * `--external-ca protocol=cfssl`): the manager sends the CSR with the subject
 * and hosts it chose, and checks what comes back before anyone sees it: it
 * must chain to the root, carry exactly the requested subject, and certify
 * the CSR's key. CAs are tried in order; each gets 5 seconds. The manager
 * presents its own certificate, so a cfssl behind mutual TLS accepts it.
 */
import { X509Certificate, createHmac } from 'node:crypto';
import { MusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { ROLE_OU } from '../../core/roles.js';
import { isIssuedBy } from '../../pki/peer.js';
import { spkiDer } from '../../pki/keys.js';
import { subjectAltNames, type IssuedCertificate } from '../../pki/issue.js';
import { TransportError, createDispatcher, send, type Dispatcher } from '../../api/transport.js';
import type { SignRequest, Signer } from './signing.js';

/** How long one CA gets to answer. */
export const EXTERNAL_CA_TIMEOUT_MS = 5_000;

/** cfssl profile names muster asks for: node certificates and API-user certificates. */
export const CFSSL_PROFILES = { node: 'node', admin: 'client' } as const;

/** One external CA, its secrets unsealed. */
export interface CfsslCa {
  url: string;
  cacertPem?: string;
  authKeyHex?: string;
}

interface CfsslResponse {
  success?: boolean;
  result?: { certificate?: string };
  errors?: { code?: number; message?: string }[];
}

/** The cfssl sign request body (cfssl's signer.SignRequest). */
function signBody(request: SignRequest): Buffer {
  return Buffer.from(
    JSON.stringify({
      certificate_request: request.csrPem,
      hosts: subjectAltNames(request),
      subject: { CN: request.commonName, names: [{ O: request.clusterId, OU: ROLE_OU[request.role] }] },
      profile: request.role === 'admin' || (request.role === 'service' && request.clientOnly === true) ? CFSSL_PROFILES.admin : CFSSL_PROFILES.node,
    }),
  );
}

/**
 * cfssl's authenticated request (auth.AuthenticatedRequest): the request
 * bytes in base64 and an HMAC-SHA256 over exactly those bytes.
 */
export function authenticatedBody(body: Buffer, keyHex: string): Buffer {
  const token = createHmac('sha256', Buffer.from(keyHex, 'hex')).update(body).digest('base64');
  return Buffer.from(JSON.stringify({ token, request: body.toString('base64') }));
}

/**
 * The endpoint for a CA: a URL with a path is used as given (as SwarmKit
 * does: `https://ca:8888/api/v1/cfssl/sign`); a bare origin gets cfssl's
 * sign path, or authsign when an auth key is set.
 */
export function signEndpoint(ca: CfsslCa): string {
  const url = new URL(ca.url);
  if (url.pathname !== '/' && url.pathname !== '') return ca.url;
  return `${url.origin}/api/v1/cfssl/${ca.authKeyHex === undefined ? 'sign' : 'authsign'}`;
}

/** Signs through one or more cfssl servers. */
export class CfsslSigner implements Signer {
  readonly external = true;
  /** An external CA's cluster publishes no CRL (see services/revocations.ts). */
  readonly crlIssuers = [];
  private readonly dispatchers = new Map<string, { certPem: string | undefined; dispatcher: Dispatcher }>();

  constructor(
    private readonly cas: readonly CfsslCa[],
    rootPem: string,
    private readonly deps: { logger: Logger; timeoutMs?: number; clientTls?: () => { certPem: string; keyPem: string } | undefined },
    private readonly root = new X509Certificate(rootPem),
  ) {}

  async issue(request: SignRequest): Promise<IssuedCertificate> {
    let failure: MusterError | undefined;
    for (const ca of this.cas) {
      try {
        return this.check(await this.post(ca, request), request, ca.url);
      } catch (error) {
        if (!(error instanceof MusterError)) throw error;
        this.deps.logger.warn({ ca: ca.url, code: error.code, reason: error.message }, 'external CA failed');
        // A CA that answered outranks one that did not: its message says more.
        if (failure === undefined || failure.code === 'EXTERNAL_CA_UNAVAILABLE') failure = error;
      }
    }
    throw failure ?? new MusterError('EXTERNAL_CA_UNAVAILABLE', 'no external CA is configured');
  }

  async close(): Promise<void> {
    const all = [...this.dispatchers.values()];
    this.dispatchers.clear();
    await Promise.all(all.map((d) => d.dispatcher.close()));
  }

  /** A connection pool per CA, presenting the manager's current certificate. */
  private dispatcherFor(ca: CfsslCa): Dispatcher {
    const client = this.deps.clientTls?.();
    const held = this.dispatchers.get(ca.url);
    if (held !== undefined && held.certPem === client?.certPem) return held.dispatcher;
    if (held !== undefined) void held.dispatcher.close();
    const dispatcher = createDispatcher({
      tls: {
        ...(ca.cacertPem === undefined ? {} : { ca: ca.cacertPem }),
        ...(client === undefined ? {} : { cert: client.certPem, key: client.keyPem }),
      },
      keepAliveMs: 30_000,
      connectTimeoutMs: this.deps.timeoutMs ?? EXTERNAL_CA_TIMEOUT_MS,
    });
    this.dispatchers.set(ca.url, { certPem: client?.certPem, dispatcher });
    return dispatcher;
  }

  private async post(ca: CfsslCa, request: SignRequest): Promise<string> {
    const plain = signBody(request);
    const payload = ca.authKeyHex === undefined ? plain : authenticatedBody(plain, ca.authKeyHex);
    const timeoutMs = this.deps.timeoutMs ?? EXTERNAL_CA_TIMEOUT_MS;
    let response;
    try {
      response = await send({ dispatcher: this.dispatcherFor(ca), url: signEndpoint(ca), method: 'POST', body: payload, timeoutMs });
    } catch (error) {
      if (error instanceof TransportError && error.failure === 'tls') {
        throw new MusterError('EXTERNAL_CA_ERROR', `the external CA at ${ca.url} failed the TLS handshake (${error.code})`, {
          hint: 'check cacert= of --external-ca, and that the CA accepts the manager certificate if it requires client certificates',
        });
      }
      const why =
        error instanceof TransportError && error.failure === 'timeout'
          ? `did not answer within ${timeoutMs / 1000} s`
          : `cannot be reached: ${error instanceof TransportError ? error.code : String(error)}`;
      throw new MusterError('EXTERNAL_CA_UNAVAILABLE', `the external CA at ${ca.url} ${why}`);
    }
    let parsed: CfsslResponse;
    try {
      parsed = JSON.parse(response.body.toString('utf8')) as CfsslResponse;
    } catch {
      const needsAuth = response.status === 404 && ca.authKeyHex === undefined;
      throw new MusterError('EXTERNAL_CA_ERROR', `the external CA at ${ca.url} answered HTTP ${response.status} without a cfssl response`, {
        hint: needsAuth
          ? 'a cfssl server that requires authentication only serves /api/v1/cfssl/authsign: add authkey=HEX to --external-ca'
          : 'check the url of --external-ca',
      });
    }
    const certificate = parsed.result?.certificate;
    if (parsed.success !== true || typeof certificate !== 'string') {
      const said =
        (parsed.errors ?? [])
          .map((e) => e.message)
          .filter((m): m is string => typeof m === 'string')
          .join('; ') || `HTTP ${response.status}`;
      throw new MusterError('EXTERNAL_CA_ERROR', `the external CA at ${ca.url} refused to sign: ${said}`);
    }
    return certificate;
  }

  /** Refuses a returned certificate that is not exactly what was asked for. */
  private check(certPem: string, request: SignRequest, url: string): IssuedCertificate {
    const refuse = (why: string, hint?: string): MusterError => {
      this.deps.logger.error({ ca: url, reason: why, subject: request.commonName }, 'external CA returned a certificate that was refused');
      return new MusterError(
        'EXTERNAL_CA_ERROR',
        `the external CA at ${url} returned a certificate that ${why}; it was refused`,
        hint === undefined ? {} : { hint },
      );
    };
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certPem);
    } catch {
      throw refuse('cannot be parsed');
    }
    if (!isIssuedBy(cert, this.root)) throw refuse('does not chain to the cluster root');
    const expected = [`CN=${request.commonName}`, `O=${request.clusterId}`, `OU=${ROLE_OU[request.role]}`].sort();
    const got = cert.subject.split('\n').sort();
    if (got.length !== expected.length || got.some((line, i) => line !== expected[i]))
      throw refuse(`has the subject ${got.join(', ')} instead of ${expected.join(', ')}`);
    if (!spkiDer(cert.publicKey).equals(request.csr.spki)) throw refuse("does not hold the requester's key");
    if (request.role === 'admin' && (cert.keyUsage ?? []).includes('1.3.6.1.5.5.7.3.1')) {
      throw refuse(
        'could serve as a TLS server (an API-user certificate must be clientAuth only)',
        `give cfssl's '${CFSSL_PROFILES.admin}' profile the usages "signing", "digital signature" and "client auth" only`,
      );
    }
    return { certPem: cert.toString(), serial: cert.serialNumber, notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
  }
}
