/**
 * Reading a SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) under the key policy.
 * The algorithm and curve come from the SPKI's own OIDs, and EC keys are
 * imported from their coordinates: OpenSSL 3.0's generic DER decoder costs
 * ~230 µs a key here, a JWK import about half that, and the join path pays
 * it on every request.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { MusterError } from '../core/errors.js';
import { OID, TAG, contentOf, decodeOid, readChildren, readTlv } from './der.js';
import type { KeyKind, KeyPolicyCodes } from './keys.js';

const CURVES: Readonly<Record<string, { kind: KeyKind; crv: string; size: number }>> = {
  '1.2.840.10045.3.1.7': { kind: 'ec-p256', crv: 'P-256', size: 32 },
  '1.3.132.0.34': { kind: 'ec-p384', crv: 'P-384', size: 48 },
};

/** A public key that passed the policy. */
export interface PolicyKey {
  publicKey: KeyObject;
  kind: KeyKind;
}

/** Bit length of a big-endian unsigned integer's content bytes. */
function bitLength(bytes: Buffer): number {
  let i = 0;
  while (i < bytes.length && bytes[i] === 0) i++;
  if (i === bytes.length) return 0;
  return (bytes.length - i - 1) * 8 + (32 - Math.clz32(bytes[i]!));
}

/**
 * Checks an SPKI against the policy (EC P-256/P-384, RSA >= 2048) and returns
 * it as a KeyObject. `malformed` is thrown for structure the policy cannot
 * read; the policy codes for a weak or unsupported key.
 */
export function readPolicyKey(spki: Buffer, codes: KeyPolicyCodes & { malformed: () => Error }): PolicyKey {
  const outer = readTlv(spki, 0);
  if (outer === undefined || outer.tag !== TAG.SEQUENCE || outer.end !== spki.length) throw codes.malformed();
  const [algorithm, keyBits] = readChildren(spki, outer) ?? [];
  if (algorithm?.tag !== TAG.SEQUENCE || keyBits?.tag !== TAG.BIT_STRING) throw codes.malformed();
  const [algOid, params] = readChildren(spki, algorithm) ?? [];
  if (algOid?.tag !== TAG.OID) throw codes.malformed();
  const alg = decodeOid(contentOf(spki, algOid));
  const key = contentOf(spki, keyBits);
  if (key[0] !== 0) throw codes.malformed();

  if (alg === OID.ecPublicKey) {
    const curveId = params?.tag === TAG.OID ? decodeOid(contentOf(spki, params)) : 'explicit parameters';
    const curve = CURVES[curveId];
    if (curve === undefined) throw new MusterError(codes.unsupported, `the EC curve ${curveId} is not supported (use P-256 or P-384)`);
    const point = key.subarray(1);
    let publicKey: KeyObject;
    try {
      if (point[0] === 0x04 && point.length === 1 + 2 * curve.size) {
        const x = point.subarray(1, 1 + curve.size).toString('base64url');
        const y = point.subarray(1 + curve.size).toString('base64url');
        publicKey = createPublicKey({ key: { kty: 'EC', crv: curve.crv, x, y }, format: 'jwk' });
      } else {
        publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' }); // compressed points: rare
      }
    } catch {
      throw codes.malformed();
    }
    return { publicKey, kind: curve.kind };
  }

  if (alg === OID.rsaEncryption) {
    const rsaSeq = readTlv(key, 1);
    const [n, e] = rsaSeq?.tag === TAG.SEQUENCE && rsaSeq.end === key.length ? readChildren(key, rsaSeq) ?? [] : [];
    if (n?.tag !== TAG.INTEGER || e?.tag !== TAG.INTEGER) throw codes.malformed();
    const modulusBits = bitLength(contentOf(key, n));
    if (modulusBits < 2048) throw new MusterError(codes.weak, `the RSA key has ${modulusBits} bits; at least 2048 are required`);
    try {
      return { publicKey: createPublicKey({ key: spki, format: 'der', type: 'spki' }), kind: 'rsa' };
    } catch {
      throw codes.malformed();
    }
  }

  throw new MusterError(codes.unsupported, `keys of algorithm ${alg} are not supported (use EC P-256/P-384 or RSA >= 2048)`);
}
