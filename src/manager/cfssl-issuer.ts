/**
 * Signing through an external CA that speaks cfssl's API (docker swarm's
 * `--external-ca protocol=cfssl`): the manager sends the CSR with the subject
 * and hosts it chose, and checks what comes back before anyone sees it — it
 * must chain to the root, carry exactly the requested subject, and certify
 * the CSR's key. CAs are tried in order; each gets 5 seconds.
 */
import { X509Certificate, createHmac } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { MusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ROLE_OU } from '../core/roles.js';
import { isIssuedBy } from '../pki/peer.js';
import { spkiDer } from '../pki/keys.js';
import { subjectAltNames, type IssuedCertificate } from '../pki/issue.js';
import type { ExternalCaRecord } from '../store/records.js';
import type { CertificateIssuer, SignRequest } from './issuer.js';

/** How long one CA gets to answer. */
export const EXTERNAL_CA_TIMEOUT_MS = 5_000;

/** cfssl profile names muster asks for: node certificates and API-user certificates. */
export const CFSSL_PROFILES = { node: 'node', admin: 'client' } as const;

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
      profile: request.role === 'admin' ? CFSSL_PROFILES.admin : CFSSL_PROFILES.node,
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

/** Signs through one or more cfssl servers. */
export class CfsslIssuer implements CertificateIssuer {
  readonly external = true;

  constructor(
    private cas: readonly ExternalCaRecord[],
    private readonly root: X509Certificate,
    private readonly logger: Logger,
    private readonly timeoutMs: number = EXTERNAL_CA_TIMEOUT_MS,
  ) {}

  /** The CAs in the order they are tried (URLs only: keys stay inside). */
  get urls(): string[] {
    return this.cas.map((ca) => ca.url);
  }

  /** Replaces the list (muster update --external-ca). */
  setCas(cas: readonly ExternalCaRecord[]): void {
    this.cas = cas;
  }

  async issue(request: SignRequest): Promise<IssuedCertificate> {
    let failure: MusterError | undefined;
    for (const ca of this.cas) {
      try {
        return this.check(await this.post(ca, request), request, ca.url);
      } catch (error) {
        if (!(error instanceof MusterError)) throw error;
        this.logger.warn({ ca: ca.url, code: error.code, reason: error.message }, 'external CA failed');
        // A CA that answered outranks one that did not: its message says more.
        if (failure === undefined || failure.code === 'EXTERNAL_CA_UNAVAILABLE') failure = error;
      }
    }
    throw failure ?? new MusterError('EXTERNAL_CA_UNAVAILABLE', 'no external CA is configured');
  }

  private post(ca: ExternalCaRecord, request: SignRequest): Promise<string> {
    const plain = signBody(request);
    const url = new URL(`${ca.url}/api/v1/cfssl/${ca.authKeyHex === undefined ? 'sign' : 'authsign'}`);
    const payload = ca.authKeyHex === undefined ? plain : authenticatedBody(plain, ca.authKeyHex);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<string>((resolve, reject) => {
      const unavailable = (why: string): MusterError => new MusterError('EXTERNAL_CA_UNAVAILABLE', `the external CA at ${ca.url} ${why}`);
      const timer = setTimeout(() => req.destroy(unavailable(`did not answer within ${this.timeoutMs / 1000} s`)), this.timeoutMs);
      const req = send(
        url,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': String(payload.length) },
          ...(ca.cacertPem === undefined ? {} : { ca: ca.cacertPem }),
          minVersion: 'TLSv1.2',
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => {
            clearTimeout(timer);
            let parsed: CfsslResponse;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as CfsslResponse;
            } catch {
              const needsAuth = res.statusCode === 404 && ca.authKeyHex === undefined;
              reject(
                new MusterError('EXTERNAL_CA_ERROR', `the external CA at ${ca.url} answered HTTP ${res.statusCode ?? 0} without a cfssl response`, {
                  hint: needsAuth ? 'a cfssl server that requires authentication only serves /api/v1/cfssl/authsign: add authkey=HEX to --external-ca' : 'check the url of --external-ca',
                }),
              );
              return;
            }
            const certificate = parsed.result?.certificate;
            if (parsed.success !== true || typeof certificate !== 'string') {
              const said = (parsed.errors ?? []).map((e) => e.message).filter((m): m is string => typeof m === 'string').join('; ') || `HTTP ${res.statusCode ?? 0}`;
              reject(new MusterError('EXTERNAL_CA_ERROR', `the external CA at ${ca.url} refused to sign: ${said}`));
              return;
            }
            resolve(certificate);
          });
          res.on('error', (e) => reject(unavailable(`broke off: ${e.message}`)));
        },
      );
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e instanceof MusterError ? e : unavailable(`cannot be reached: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      });
      req.end(payload);
    });
  }

  /** Refuses a returned certificate that is not exactly what was asked for. */
  private check(certPem: string, request: SignRequest, url: string): IssuedCertificate {
    const refuse = (why: string): MusterError => {
      this.logger.error({ ca: url, reason: why, subject: request.commonName }, 'external CA returned a certificate that was refused');
      return new MusterError('EXTERNAL_CA_ERROR', `the external CA at ${url} returned a certificate that ${why}; it was refused`);
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
    if (got.length !== expected.length || got.some((line, i) => line !== expected[i])) throw refuse(`has the subject ${got.join(', ')} instead of ${expected.join(', ')}`);
    if (!spkiDer(cert.publicKey).equals(request.csr.spki)) throw refuse("does not hold the requester's key");
    if (request.role === 'admin' && (cert.keyUsage ?? []).includes('1.3.6.1.5.5.7.3.1')) throw refuse('could serve as a TLS server (an API-user certificate must be clientAuth only)');
    const pem = cert.toString();
    return { certPem: pem, serial: cert.serialNumber, notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
  }
}
