/**
 * Signature algorithms: the AlgorithmIdentifier written into CSRs and
 * certificates for each key kind, and the native signing call.
 */
import { sign, type KeyObject } from 'node:crypto';
import { NULL, OID, oid, seq } from './der.js';
import { hashFor, type KeyKind } from './keys.js';

/** How a key kind signs. */
export interface SignatureAlgorithm {
  hash: 'sha256' | 'sha384';
  /** The AlgorithmIdentifier DER written into CSRs and certificates. */
  identifier: Buffer;
}

/** The algorithm muster signs with for a key kind (RFC 5758 §3.2 for ECDSA: no parameters; RFC 4055 for RSA: NULL). */
export function signatureAlgorithm(kind: KeyKind): SignatureAlgorithm {
  const hash = hashFor(kind);
  if (kind === 'rsa') return { hash, identifier: seq(oid(OID.sha256WithRsa), NULL) };
  const id = hash === 'sha384' ? OID.ecdsaWithSha384 : OID.ecdsaWithSha256;
  return { hash, identifier: seq(oid(id)) };
}

/** Signs `data` natively with the algorithm's hash (ECDSA signatures come out DER-encoded, as X.509 wants). */
export function signWith(algorithm: SignatureAlgorithm, data: Buffer, key: KeyObject): Buffer {
  return sign(algorithm.hash, data, key);
}
