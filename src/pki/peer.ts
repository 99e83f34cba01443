/**
 * Reading a presented certificate into the identity the API authorises on,
 * after checking that it chains to the cluster root and is within validity.
 */
import { X509Certificate } from 'node:crypto';
import { MusterError } from '../core/errors.js';
import { roleFromOu, type CertRole } from '../core/roles.js';
import { DerNode, OID, TAG, readPemBlocks } from './der.js';
import { readNameFields } from './name.js';

/** Who a verified certificate says its holder is. */
export interface PeerIdentity {
  /** The CN: a node ID, or an API user's name. */
  nodeId: string;
  /** From the OU; undefined for an OU muster never issues. */
  role: CertRole | undefined;
  /** From the O. */
  clusterId: string | undefined;
  serial: string;
  notBefore: number;
  notAfter: number;
}

/** What to verify a presented certificate against. */
export interface PeerCheck {
  cert: X509Certificate | string | Buffer;
  roots: readonly X509Certificate[];
  now: number;
  /** Accept a certificate that expired less than this long ago (renewal after expiry). */
  graceMs?: number;
}

/** Parses a certificate from PEM/DER or passes an X509Certificate through; CERT_INVALID on junk. */
export function toX509(cert: X509Certificate | string | Buffer): X509Certificate {
  if (cert instanceof X509Certificate) return cert;
  try {
    return new X509Certificate(cert);
  } catch (cause) {
    throw new MusterError('CERT_INVALID', undefined, { cause });
  }
}

/** The certificates of a PEM bundle (a trust bundle holds two roots while a rotation runs). */
export function readBundle(pem: string): X509Certificate[] {
  return readPemBlocks(pem)
    .filter((block) => block.label === 'CERTIFICATE')
    .map((block) => toX509(block.der));
}

/** True when `cert` was issued and signed by `issuer`. */
export function isIssuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/**
 * Verifies that `cert` chains to one of `roots` and is valid at `now`, then
 * returns the identity it carries. The caller decides what the identity may
 * do (cluster ID, role, removed nodes).
 */
export function readPeerCertificate(params: PeerCheck): PeerIdentity {
  return verifyPeerCertificate(params).identity;
}

/** {@link readPeerCertificate}, and which of the roots issued the certificate. */
export function verifyPeerCertificate(params: PeerCheck): { identity: PeerIdentity; issuer: X509Certificate } {
  const cert = toX509(params.cert);
  const issuer = params.roots.find((root) => isIssuedBy(cert, root));
  if (issuer === undefined) throw new MusterError('CERT_UNTRUSTED');
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (params.now < notBefore) throw new MusterError('CERT_NOT_YET_VALID');
  if (params.now > notAfter + (params.graceMs ?? 0)) {
    throw new MusterError(
      'CERT_EXPIRED',
      params.graceMs === undefined ? undefined : `the certificate expired on ${new Date(notAfter).toISOString()}, longer ago than the renewal grace`,
    );
  }
  const name = readNameFields(cert.subject);
  const identity: PeerIdentity = {
    nodeId: name.commonName ?? '',
    role: roleFromOu(name.organizationalUnit),
    clusterId: name.organization,
    serial: cert.serialNumber,
    notBefore,
    notAfter,
  };
  return { identity, issuer };
}

/** Whether a certificate (DER) carries a CRL Distribution Point: its issuer publishes a CRL that a verifier must check. */
export function hasCrlDistributionPoint(der: Buffer): boolean {
  try {
    const tbs = DerNode.parse(der, (why) => new Error(why)).child(0, TAG.SEQUENCE);
    const wrapped = tbs.children().find((c) => c.tag === 0xa3);
    if (wrapped === undefined) return false;
    return wrapped
      .inner()
      .children()
      .some((ext) => ext.child(0).oid() === OID.crlDistributionPoints);
  } catch {
    return false;
  }
}
