/**
 * Building and signing X.509 v3 certificates (RFC 5280 §4.1): the TBS is
 * assembled from DER parts and signed natively.
 */
import { createHash, type KeyObject } from 'node:crypto';
import type { Random } from '../core/random.js';
import { DerNode, TAG, TRUE, bits, explicit, octets, oid, seq, smallInt, time, uint } from './der.js';
import { signWith, type SignatureAlgorithm } from './signature.js';

/** Inputs to {@link buildCertificate}. */
export interface CertificateFields {
  serial: Buffer;
  /** Name DER. */
  issuer: Buffer;
  /** Name DER. */
  subject: Buffer;
  notBefore: number;
  notAfter: number;
  /** SubjectPublicKeyInfo DER of the certified key. */
  spki: Buffer;
  /** Extension DERs, see {@link extension}. */
  extensions: Buffer[];
  signer: { key: KeyObject; algorithm: SignatureAlgorithm };
}

/**
 * SHA-256 (hex) of a certificate's DER, from its PEM (the first block): what
 * the store pins a node's certificates by. A serial alone can be copied by
 * whoever holds the issuing key (a removed manager holds a replaced root's).
 */
export function certificateSha256(pem: string): string {
  const body = /-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/.exec(pem)?.[1] ?? '';
  return createHash('sha256')
    .update(Buffer.from(body.replace(/\s+/g, ''), 'base64'))
    .digest('hex');
}

const V3 = explicit(0, smallInt(2));

/** Builds the TBSCertificate, signs it natively and returns the certificate DER. */
export function buildCertificate(fields: CertificateFields): Buffer {
  const tbsDer = seq(
    V3,
    uint(fields.serial),
    fields.signer.algorithm.identifier,
    fields.issuer,
    seq(time(fields.notBefore), time(fields.notAfter)),
    fields.subject,
    fields.spki,
    explicit(3, seq(...fields.extensions)),
  );
  const signature = signWith(fields.signer.algorithm, tbsDer, fields.signer.key);
  return seq(tbsDer, fields.signer.algorithm.identifier, bits(signature));
}

/** One Extension (RFC 5280 §4.1): the value is DER-encoded into an OCTET STRING. */
export function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), TRUE, octets(value)) : seq(oid(id), octets(value));
}

/** Key identifier per RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Buffer): Buffer {
  const key = DerNode.parse(spki, (why) => new Error(`not a SubjectPublicKeyInfo: ${why}`)).child(1, TAG.BIT_STRING);
  return createHash('sha1').update(key.content.subarray(1)).digest();
}

/** A random positive serial of 20 bytes (RFC 5280 §4.1.2.2), first byte 0x10–0x7f so its hex has no leading zero. */
export function randomSerial(random: Random): Buffer {
  const serial = random.bytes(20);
  serial[0] = 0x10 + (serial[0]! % 0x70);
  return serial;
}

/** Serial as Node prints it (`X509Certificate.serialNumber`): upper-case hex. */
export function serialHex(serial: Buffer): string {
  return serial.toString('hex').toUpperCase();
}
