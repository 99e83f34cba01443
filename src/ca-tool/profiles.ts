/**
 * Flocker's certificate profiles (flocker/ca/_ca.py), built with muster's
 * own pki code: a self-signed root named by the administrator with the
 * cluster's UUID as its OU, and three kinds of leaf under it that cannot
 * impersonate one another: the control service (CN=control-service, its
 * host name as SAN), a node (CN=node-<uuid>) and an API user
 * (CN=user-<name>, clientAuth only, so it can never serve). Pure: keys,
 * time and randomness come in as arguments.
 */
import { isIP } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { MusterError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { loadSigningCa, type SigningCa } from '../pki/ca.js';
import { buildCertificate, extension, keyIdentifier } from '../pki/certificate.js';
import { OID, TRUE, bits, implicitPrimitive, octets, oid, seq, smallInt, toPem } from '../pki/der.js';
import { generalNames } from '../pki/issue.js';
import { spkiDer, type KeyKind } from '../pki/keys.js';
import { buildName, readNameFields } from '../pki/name.js';
import { signatureAlgorithm } from '../pki/signature.js';

/** Flocker's lifetime for every certificate it makes: 20 years of 365 days (EXPIRY_20_YEARS). */
export const FLOCKER_VALIDITY_MS = 20 * 365 * 86_400_000;

/** The root's file names, as flocker-ca writes and reads them. */
export const ROOT_FILES = { cert: 'cluster.crt', key: 'cluster.key' } as const;

/** The key types muster-ca makes: Flocker's RSA-4096 (the default), or P-256. */
export const KEY_TYPES = ['rsa4096', 'p256'] as const;
/** One of {@link KEY_TYPES}. */
export type KeyType = (typeof KEY_TYPES)[number];

/** A key pair made for a certificate, with the kind muster's signing code knows it by. */
export interface CredentialKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  kind: KeyKind;
}

/** A loaded cluster root: muster's signer over it, and the OU every leaf copies. */
export interface FlockerRoot {
  ca: SigningCa;
  /** The cluster's UUID, written by `initialize` as the root's OU. */
  organizationalUnit: string;
}

/** What a leaf certifies; each kind has its own subject and files. */
export type LeafProfile = { kind: 'control'; hostname: string } | { kind: 'node'; uuid: string } | { kind: 'api'; username: string };

// RFC 5280's upper bound for a CN (ub-common-name): OpenSSL, and so flocker-ca, refuses longer ones.
const MAX_CN = 64;
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/** The cluster name `initialize` writes as the root's CN: 1 to 64 printable characters. */
export function checkClusterName(name: string): string {
  if (name === '') throw new MusterError('USAGE', 'the cluster name is empty', { hint: 'muster-ca initialize mycluster' });
  if ([...name].length > MAX_CN || CONTROL_CHARACTERS.test(name)) {
    throw new MusterError('USAGE', `the cluster name must be 1 to ${MAX_CN} printable characters`, { hint: 'muster-ca initialize mycluster' });
  }
  return name;
}

/**
 * An API user name: it becomes the file names `<name>.crt`/`<name>.key`, so
 * it must name a file inside the output folder (no '/', not '.' or '..'),
 * and the CN `user-<name>`, so at most 59 characters.
 */
export function checkUsername(name: string): string {
  const hint = 'a user name is a plain file name such as alice: no slashes, not . or ..';
  if (name === '') throw new MusterError('USAGE', 'the user name is empty', { hint });
  if (name.includes('/') || name.includes('\\') || name === '.' || name === '..') {
    throw new MusterError('USAGE', `the user name '${printable(name)}' would write outside the output folder`, { hint });
  }
  if (CONTROL_CHARACTERS.test(name)) throw new MusterError('USAGE', 'the user name contains control characters', { hint });
  const max = MAX_CN - 'user-'.length;
  if ([...name].length > max) throw new MusterError('USAGE', `the user name is longer than ${max} characters`, { hint });
  return name;
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/**
 * The control service's host name: a DNS name HTTPS clients resolve, or an
 * IP address. It names the files `control-<hostname>.*`, so nothing else
 * (no '/', no '..', not empty) is accepted.
 */
export function checkHostname(hostname: string): string {
  const hint = "give the name HTTPS clients will use for the control service, e.g. 'control.example.org' or '10.0.0.1'";
  if (hostname === '') throw new MusterError('USAGE', 'the host name is empty', { hint });
  if (isIP(hostname) !== 0) return hostname;
  if (hostname.length > 253 || !hostname.split('.').every((label) => DNS_LABEL.test(label))) {
    throw new MusterError('USAGE', `'${printable(hostname)}' is not a DNS name or an IP address`, { hint });
  }
  return hostname;
}

/** A name as it can be shown in one line of an error. */
function printable(text: string): string {
  return JSON.stringify(text.slice(0, 80)).slice(1, -1);
}

/** A random version-4 UUID (RFC 9562 §5.4), in its usual 8-4-4-4-12 form: Flocker's cluster and node IDs. */
export function uuidV4(random: Random): string {
  const b = random.bytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Flocker's serial: 128 random bits (`os.urandom(16)` read as an integer). */
function flockerSerial(random: Random): Buffer {
  return random.bytes(16);
}

/** The files a profile's certificate and key are written to, inside the output folder. */
export function leafFiles(profile: LeafProfile): { cert: string; key: string } {
  const base = profile.kind === 'control' ? `control-${profile.hostname}` : profile.kind === 'node' ? profile.uuid : profile.username;
  return { cert: `${base}.crt`, key: `${base}.key` };
}

/** The subject CN of a profile: what tells the three kinds of certificate apart. */
export function leafCommonName(profile: LeafProfile): string {
  switch (profile.kind) {
    case 'control':
      return 'control-service';
    case 'node':
      return `node-${profile.uuid}`;
    case 'api':
      return `user-${profile.username}`;
  }
}

/**
 * The self-signed root of `flocker-ca initialize`: subject and issuer
 * `CN=<name>, OU=<cluster uuid>`; basicConstraints critical CA:TRUE with
 * pathlen 0 (it signs leaves only); keyUsage critical keyCertSign and
 * cRLSign; SKI, and an AKI naming itself (keyid:always); 20 years from now.
 */
export function buildRootCertificate(params: { name: string; clusterUuid: string; key: CredentialKey; now: number; random: Random }): string {
  const spki = spkiDer(params.key.publicKey);
  const name = buildName({ organizationalUnit: params.clusterUuid, commonName: params.name });
  const ski = keyIdentifier(spki);
  const der = buildCertificate({
    serial: flockerSerial(params.random),
    issuer: name,
    subject: name,
    notBefore: params.now,
    notAfter: params.now + FLOCKER_VALIDITY_MS,
    spki,
    extensions: [
      extension(OID.basicConstraints, true, seq(TRUE, smallInt(0))), // CA:TRUE, pathlen:0
      extension(OID.keyUsage, true, bits(Buffer.of(0x06), 1)), // keyCertSign, cRLSign
      extension(OID.subjectKeyIdentifier, false, octets(ski)),
      extension(OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, ski))),
    ],
    signer: { key: params.key.privateKey, algorithm: signatureAlgorithm(params.key.kind) },
  });
  return toPem(der, 'CERTIFICATE');
}

/**
 * A leaf under the root: issuer the root's subject (verbatim), subject
 * `CN=<profile's CN>, OU=<root's OU>`, 20 years but never past the root.
 * Flocker adds only the profile's extension (the control service's SAN, the
 * API user's clientAuth); muster adds CA:FALSE, SKI and AKI as well, which
 * `openssl verify -x509_strict` requires of a leaf (RFC 5280 §4.2.1.1).
 */
export function buildLeafCertificate(params: { root: FlockerRoot; profile: LeafProfile; publicKey: KeyObject; now: number; random: Random }): string {
  const { root, profile } = params;
  const spki = spkiDer(params.publicKey);
  const extensions = [
    extension(OID.basicConstraints, true, seq()), // CA:FALSE
    extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(spki))),
    extension(OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, root.ca.keyId))),
  ];
  // The control service's name as HTTPS clients check it: an iPAddress SAN for an address, else a dNSName.
  if (profile.kind === 'control') extensions.push(extension(OID.subjectAltName, false, generalNames([profile.hostname])));
  // An API user's certificate is a client's only: under no circumstances may it serve as the control service.
  if (profile.kind === 'api') extensions.push(extension(OID.extKeyUsage, false, seq(oid(OID.clientAuth))));
  const der = buildCertificate({
    serial: flockerSerial(params.random),
    issuer: root.ca.subjectDer,
    subject: buildName({ organizationalUnit: root.organizationalUnit, commonName: leafCommonName(profile) }),
    notBefore: params.now,
    notAfter: Math.min(params.now + FLOCKER_VALIDITY_MS, root.ca.notAfter),
    spki,
    extensions,
    signer: { key: root.ca.key, algorithm: root.ca.algorithm },
  });
  return toPem(der, 'CERTIFICATE');
}

/**
 * Reads cluster.crt and cluster.key into a signer: one CA certificate, a
 * key that matches it, and an OU (the cluster UUID) for the leaves to copy.
 */
export function parseFlockerRoot(certPem: string, keyPem: string): FlockerRoot {
  const ca = loadSigningCa({ certPem, keyPem }); // CA_CERT_INVALID, CA_KEY_INVALID, CA_UNSUPPORTED_KEY
  if (!ca.cert.ca) throw new MusterError('CA_NOT_CA', `${ROOT_FILES.cert} is not a CA certificate (basicConstraints CA:TRUE is missing)`);
  if (!ca.cert.checkPrivateKey(ca.key)) throw new MusterError('CA_KEY_MISMATCH', `${ROOT_FILES.key} does not match ${ROOT_FILES.cert}`);
  const ou = readNameFields(ca.cert.subject).organizationalUnit;
  if (ou === undefined || ou === '') {
    throw new MusterError(
      'CA_CERT_INVALID',
      `${ROOT_FILES.cert} has no OU naming the cluster: it was not made by 'muster-ca initialize' or 'flocker-ca initialize'`,
    );
  }
  return { ca, organizationalUnit: ou };
}
