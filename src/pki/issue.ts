/**
 * Issuing node and API-user certificates from a CSR's public key. The
 * manager decides every identity field here: the CSR contributes its key and
 * nothing else, because the threat is a node asking for a role it was not
 * given (a worker CSR with OU=swarm-manager).
 */
import { isIP } from 'node:net';
import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import { ROLE_OU, type CertRole } from '../core/roles.js';
import type { SigningCa } from './ca.js';
import { buildCertificate, extension, keyIdentifier, randomSerial, serialHex } from './certificate.js';
import type { ParsedCsr } from './csr.js';
import { OID, bits, implicitConstructed, implicitPrimitive, octets, oid, seq, toPem } from './der.js';
import type { KeyKind } from './keys.js';
import { buildName } from './name.js';

/** Node certificates are backdated an hour to absorb clock skew between nodes. */
export const LEAF_BACKDATE_MS = 60 * 60 * 1000;

/**
 * When a node certificate was issued, as renewal windows count it (issue
 * 31): NotBefore is backdated an hour, which is most of a 5-minute
 * certificate's span; counted from NotBefore its whole renewal window would
 * lie in the past and the node would renew in a loop. So the issue moment is
 * NotBefore plus the backdate, but never later than `now` (a certificate just
 * received was issued by now; a signer that backdates less, such as cfssl,
 * then counts from the moment it is looked at) and never before NotBefore.
 */
export function issuedAt(validity: { notBefore: number }, now: number): number {
  return Math.max(validity.notBefore, Math.min(validity.notBefore + LEAF_BACKDATE_MS, now));
}

/** What to issue: the manager's choices plus the key from a verified CSR. */
export interface IssueRequest {
  ca: SigningCa;
  csr: Pick<ParsedCsr, 'spki' | 'keyKind'>;
  role: CertRole;
  /** The node ID, or the API user's name. */
  commonName: string;
  clusterId: string;
  /** Extra SANs for manager certificates: the advertise host (IP or DNS name); a service certificate's names. */
  hosts?: readonly string[];
  /** A service certificate for a client (clientAuth only); else a service certificate serves (serverAuth only). */
  clientOnly?: boolean;
  validityMs: number;
  /**
   * Where the CRLs are published (`https://<manager>/v1/crl`); absent: no
   * CRL Distribution Point. The point names the list of this certificate's
   * issuer, `<crlUrl>/<issuer key identifier, hex>`: a verifier that fetches
   * it gets the CRL it can check this certificate against, also while a
   * root rotation has two roots sign.
   */
  crlUrl?: string;
  clock: Clock;
  random: Random;
}

/** A freshly issued certificate. */
export interface IssuedCertificate {
  /** The leaf as PEM (the chain above it is the root alone, served separately). */
  certPem: string;
  serial: string;
  notBefore: number;
  notAfter: number;
}

/**
 * The SANs of each profile (DESIGN §2): role and node ID, plus swarm-ca and
 * the advertise host for managers; an API user's name, so that verifiers
 * that insist on a SAN (Python's cryptography) accept its certificate.
 */
export function subjectAltNames(request: Pick<IssueRequest, 'role' | 'commonName' | 'hosts'>): string[] {
  switch (request.role) {
    case 'manager':
      return [...new Set([ROLE_OU.manager, request.commonName, 'swarm-ca', ...(request.hosts ?? [])])];
    case 'worker':
      return [ROLE_OU.worker, request.commonName];
    case 'admin':
      return [request.commonName];
    case 'service':
      // Only the names the managers allowed: the CN (node and service) is no host name.
      return [...new Set(request.hosts ?? [])];
  }
}

/** GeneralNames (RFC 5280 §4.2.1.6): iPAddress [7], rfc822Name [1] for a name with '@', else dNSName [2] (as cfssl reads hosts). */
export function generalNames(names: readonly string[]): Buffer {
  const unique = [...new Set(names)];
  return seq(
    ...unique.map((name) => {
      const family = isIP(name);
      if (family !== 0) return implicitPrimitive(7, ipBytes(name, family));
      return implicitPrimitive(name.includes('@') ? 1 : 2, Buffer.from(name, 'ascii'));
    }),
  );
}

function ipBytes(ip: string, family: number): Buffer {
  if (family === 4) return Buffer.from(ip.split('.').map(Number));
  // Expand '::' and read eight 16-bit groups (an embedded IPv4 tail is rare enough to map first).
  const [head = '', tail = ''] = ip.includes('::') ? ip.split('::') : [ip, ''];
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const h = parse(head);
  const t = parse(tail);
  const groups = [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(g, i * 2);
  return out;
}

/** CRLDistributionPoints (RFC 5280 §4.2.1.13) with one point: its fullName, a URI. */
function distributionPoint(url: string): Buffer {
  // distributionPoint [0] (explicit: it tags a CHOICE) holding fullName [0] GeneralNames with uniformResourceIdentifier [6].
  return seq(seq(implicitConstructed(0, [implicitConstructed(0, [implicitPrimitive(6, Buffer.from(url, 'ascii'))])])));
}

/** keyUsage bits (RFC 5280 §4.2.1.3): digitalSignature, plus keyEncipherment for RSA keys. */
function keyUsage(kind: KeyKind): Buffer {
  return kind === 'rsa' ? bits(Buffer.of(0xa0), 5) : bits(Buffer.of(0x80), 7);
}

/** Issues a node (manager/worker) or API-user (admin) certificate; NotAfter never passes the root's. */
export function issueCertificate(request: IssueRequest): IssuedCertificate {
  const now = request.clock.now();
  const notBefore = Math.floor((now - LEAF_BACKDATE_MS) / 1000) * 1000;
  const notAfter = Math.floor(Math.min(now + request.validityMs, request.ca.notAfter) / 1000) * 1000;
  const serial = randomSerial(request.random);
  const usages =
    request.role === 'admin'
      ? [OID.clientAuth]
      : request.role === 'service'
        ? [request.clientOnly === true ? OID.clientAuth : OID.serverAuth]
        : [OID.serverAuth, OID.clientAuth];
  const sans = subjectAltNames(request);
  const extensions = [
    extension(OID.basicConstraints, true, seq()), // CA:FALSE
    extension(OID.keyUsage, true, keyUsage(request.csr.keyKind)),
    extension(OID.extKeyUsage, false, seq(...usages.map(oid))),
    extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(request.csr.spki))),
    extension(OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, request.ca.keyId))),
  ];
  if (sans.length > 0) extensions.push(extension(OID.subjectAltName, false, generalNames(sans)));
  if (request.crlUrl !== undefined)
    extensions.push(extension(OID.crlDistributionPoints, false, distributionPoint(`${request.crlUrl}/${request.ca.keyId.toString('hex')}`)));
  const der = buildCertificate({
    serial,
    issuer: request.ca.subjectDer,
    subject: buildName({
      organization: request.clusterId,
      organizationalUnit: ROLE_OU[request.role],
      commonName: request.commonName,
    }),
    notBefore,
    notAfter,
    spki: request.csr.spki,
    extensions,
    signer: { key: request.ca.key, algorithm: request.ca.algorithm },
  });
  return { certPem: toPem(der, 'CERTIFICATE'), serial: serialHex(serial), notBefore, notAfter };
}
