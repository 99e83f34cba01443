/**
 * The cluster root CA: founding a self-signed root, importing an existing
 * (corporate) root, and the in-memory signer the manager issues with.
 */
import { X509Certificate, createHash, type KeyObject } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { DerNode, OID, TAG, TRUE, bits, implicitPrimitive, octets, readPemBlocks, seq, smallInt, toPem } from './der.js';
import { buildCertificate, extension, keyIdentifier, randomSerial } from './certificate.js';
import { checkKeyPolicy, generateNodeKeySync, readPrivateKey, spkiDer, type KeyKind } from './keys.js';
import { buildName } from './name.js';
import { signatureAlgorithm, type SignatureAlgorithm } from './signature.js';

/** The subject CN of every root muster founds (SwarmKit's name). */
export const ROOT_COMMON_NAME = 'swarm-ca';
/** Lifetime of a founded root: 20 years. */
export const ROOT_VALIDITY_MS = 20 * 365 * 24 * 3600 * 1000;
/** A founded root is backdated an hour, as node certificates are: a node whose clock is behind can still verify it. */
export const ROOT_BACKDATE_MS = 60 * 60 * 1000;
/** An imported root must stay valid at least this long. */
export const ROOT_MIN_REMAINING_MS = 365 * 24 * 3600 * 1000;

/** Everything the manager needs to sign under the root, parsed once. */
export interface SigningCa {
  /** The root bundle bytes, exactly as stored, served and hashed. */
  certPem: string;
  cert: X509Certificate;
  key: KeyObject;
  algorithm: SignatureAlgorithm;
  /** The root's subject Name DER, copied verbatim into each issuer field. */
  subjectDer: Buffer;
  /** The root's subject key identifier, written as each leaf's AKI. */
  keyId: Buffer;
  notBefore: number;
  notAfter: number;
}

/** A root certificate and its key, as PEM. */
export interface RootMaterial {
  certPem: string;
  keyPem: string;
}

/** What a root is, apart from its key: enough to cross-sign it. */
export type RootIdentity = Pick<SigningCa, 'cert' | 'subjectDer' | 'keyId' | 'notBefore' | 'notAfter'>;

/** The identity of a root certificate (one PEM block). */
export function rootIdentity(certPem: string): RootIdentity {
  const cert = readSingleCertificate(certPem);
  const facts = readRootFacts(cert.raw);
  return {
    cert,
    subjectDer: facts.subjectDer,
    keyId: facts.keyId ?? keyIdentifier(spkiDer(cert.publicKey)),
    notBefore: Date.parse(cert.validFrom),
    notAfter: Date.parse(cert.validTo),
  };
}

/** Founds a self-signed ECDSA P-256 root (fields per DESIGN §2). */
export function createRootCa(params: { clusterId: string; clock: Clock; random: Random }): RootMaterial {
  return createSelfSignedCa({ ...params, commonName: ROOT_COMMON_NAME });
}

/** The subject CN of the CA that issues API-user certificates (issue 28). */
export const ADMIN_CA_COMMON_NAME = 'muster admin CA';

/**
 * Founds the admin CA: a self-signed ECDSA P-256 CA (CA:TRUE, pathlen 0)
 * that issues API-user certificates only. Self-signed, so that it can be the
 * only certificate a service such as dockerd or nginx trusts: OpenSSL
 * without X509_V_FLAG_PARTIAL_CHAIN (nginx) accepts only a chain that ends
 * at a self-signed anchor. The root cross-certifies it ({@link crossSignRoot}),
 * so API users' chains still lead to the cluster root for everyone else.
 */
export function createAdminCa(params: { clusterId: string; clock: Clock; random: Random }): RootMaterial {
  return createSelfSignedCa({ ...params, commonName: ADMIN_CA_COMMON_NAME, pathLen: 0 });
}

function createSelfSignedCa(params: { clusterId: string; clock: Clock; random: Random; commonName: string; pathLen?: number }): RootMaterial {
  const key = generateNodeKeySync();
  const now = params.clock.now();
  const spki = spkiDer(key.publicKey);
  const name = buildName({ organization: params.clusterId, commonName: params.commonName });
  const ski = keyIdentifier(spki);
  const der = buildCertificate({
    serial: randomSerial(params.random),
    issuer: name,
    subject: name,
    notBefore: now - ROOT_BACKDATE_MS,
    notAfter: now + ROOT_VALIDITY_MS,
    spki,
    extensions: [
      extension(OID.basicConstraints, true, params.pathLen === undefined ? seq(TRUE) : seq(TRUE, smallInt(params.pathLen))), // CA:TRUE[, pathlen]
      extension(OID.keyUsage, true, bits(Buffer.of(0x06), 1)), // keyCertSign, cRLSign
      extension(OID.subjectKeyIdentifier, false, octets(ski)),
    ],
    signer: { key: key.privateKey, algorithm: signatureAlgorithm('ec-p256') },
  });
  return { certPem: toPem(der, 'CERTIFICATE'), keyPem: key.privateKeyPem };
}

interface RootFacts {
  subjectDer: Buffer;
  keyId: Buffer | undefined;
}

/**
 * Finds the subject Name and the SKI extension in a certificate's DER
 * (RFC 5280 §4.1): Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
 * [0] version, serial, signature, issuer, validity, subject, spki, …,
 * [3] extensions }, … }.
 */
function readRootFacts(der: Buffer): RootFacts {
  const fail = (): MusterError => new MusterError('CA_CERT_INVALID', 'the CA certificate is not a valid X.509 certificate');
  const fields = DerNode.parse(der, fail).child(0, TAG.SEQUENCE).children();
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version
  const subject = fields[offset + 4];
  if (subject === undefined) throw fail();
  let keyId: Buffer | undefined;
  const extensions =
    fields
      .find((f) => f.tag === 0xa3)
      ?.child(0, TAG.SEQUENCE)
      .children() ?? [];
  for (const ext of extensions) {
    const parts = ext.children();
    if (parts[0]?.oid() !== OID.subjectKeyIdentifier) continue;
    keyId = Buffer.from(parts[parts.length - 1]!.inner().content);
  }
  return { subjectDer: Buffer.from(subject.bytes), keyId };
}

/** Reads the one certificate in a PEM bundle, or throws CA_CERT_INVALID. */
function readSingleCertificate(certPem: string): X509Certificate {
  const blocks = readPemBlocks(certPem);
  if (blocks.length !== 1 || blocks[0]?.label !== 'CERTIFICATE') {
    throw new MusterError('CA_CERT_INVALID', `expected exactly one CERTIFICATE PEM block, found ${blocks.length} block(s)`);
  }
  try {
    return new X509Certificate(certPem);
  } catch (cause) {
    throw new MusterError('CA_CERT_INVALID', undefined, { cause });
  }
}

/**
 * The canonical PEM of a root given as a file (DESIGN §2): the one
 * CERTIFICATE block decoded and encoded again, 64-column base64, `\n` line
 * ends, one final newline, no text around it. Docker Swarm stores and hashes
 * a supplied root this way, so the same certificate gives the same token in
 * both whatever the file's line ends or preamble; a clean file is unchanged.
 */
export function canonicalRootPem(text: string): string {
  const blocks = readPemBlocks(text).filter((block) => block.label === 'CERTIFICATE');
  if (blocks.length !== 1) throw new MusterError('CA_CERT_INVALID', `expected exactly one CERTIFICATE PEM block, found ${blocks.length}`);
  return toPem(blocks[0]!.der, 'CERTIFICATE');
}

/** Parses a stored root + key into a signer. Trusts that the pair was validated when it was stored. */
export function loadSigningCa(material: RootMaterial): SigningCa {
  const cert = readSingleCertificate(material.certPem);
  const key = readPrivateKey(material.keyPem, 'CA_KEY_INVALID');
  const kind: KeyKind = checkKeyPolicy(key, { weak: 'CA_UNSUPPORTED_KEY', unsupported: 'CA_UNSUPPORTED_KEY' });
  const facts = readRootFacts(cert.raw);
  return {
    certPem: material.certPem,
    cert,
    key,
    algorithm: signatureAlgorithm(kind),
    subjectDer: facts.subjectDer,
    keyId: facts.keyId ?? keyIdentifier(spkiDer(cert.publicKey)),
    notBefore: Date.parse(cert.validFrom),
    notAfter: Date.parse(cert.validTo),
  };
}

/**
 * Validates an existing root certificate: one self-signed CA:TRUE
 * certificate with a supported key, valid for at least another year. Each
 * failure has its own code. Used alone when an external CA holds the key.
 */
export function importRootCertificate(certPem: string, clock: Clock): X509Certificate {
  const cert = readSingleCertificate(certPem);
  if (!cert.ca) throw new MusterError('CA_NOT_CA');
  let selfSigned = false;
  try {
    selfSigned = cert.checkIssued(cert) && cert.verify(cert.publicKey);
  } catch {
    selfSigned = false;
  }
  if (!selfSigned) throw new MusterError('CA_NOT_SELF_SIGNED');
  const notAfter = Date.parse(cert.validTo);
  if (!(notAfter - clock.now() >= ROOT_MIN_REMAINING_MS)) {
    throw new MusterError('CA_EXPIRES_SOON', `the CA certificate expires on ${new Date(notAfter).toISOString()}, within a year`);
  }
  checkKeyPolicy(cert.publicKey, { weak: 'CA_UNSUPPORTED_KEY', unsupported: 'CA_UNSUPPORTED_KEY' });
  return cert;
}

/** Validates an existing root and its key for `init --ca-cert/--ca-key`: the certificate checks above, and a matching supported key. */
export function importRootCa(material: RootMaterial, clock: Clock): SigningCa {
  const cert = importRootCertificate(material.certPem, clock);
  const key = readPrivateKey(material.keyPem, 'CA_KEY_INVALID');
  checkKeyPolicy(key, { weak: 'CA_UNSUPPORTED_KEY', unsupported: 'CA_UNSUPPORTED_KEY' });
  if (!cert.checkPrivateKey(key)) throw new MusterError('CA_KEY_MISMATCH');
  return loadSigningCa(material);
}

/**
 * The new root cross-signed by the old one, for a root rotation (as
 * SwarmKit's): an intermediate with the new root's subject, key and key
 * identifier, issued and signed by the old root. A certificate the new key
 * issues, sent with this intermediate, verifies against the old root too, so
 * nodes that trust only the old root accept it while the rotation runs.
 */
export function crossSignRoot(params: {
  next: RootIdentity;
  by: SigningCa;
  random: Random /** The admin CA's: 0 (it issues leaves only). */;
  pathLen?: number;
}): string {
  const { next, by } = params;
  const der = buildCertificate({
    serial: randomSerial(params.random),
    issuer: by.subjectDer,
    subject: next.subjectDer,
    notBefore: next.notBefore,
    notAfter: Math.min(next.notAfter, by.notAfter),
    spki: spkiDer(next.cert.publicKey),
    extensions: [
      extension(OID.basicConstraints, true, params.pathLen === undefined ? seq(TRUE) : seq(TRUE, smallInt(params.pathLen))), // CA:TRUE[, pathlen]
      extension(OID.keyUsage, true, bits(Buffer.of(0x06), 1)), // keyCertSign, cRLSign
      extension(OID.subjectKeyIdentifier, false, octets(next.keyId)),
      extension(OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, by.keyId))),
    ],
    signer: { key: by.key, algorithm: by.algorithm },
  });
  return toPem(der, 'CERTIFICATE');
}

/** SHA-256 of the root bundle's exact bytes: the digest inside every join token. */
export function rootDigest(rootPem: string | Uint8Array): Buffer {
  return createHash('sha256').update(rootPem).digest();
}
