/**
 * Reading a SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) under the key policy.
 * The algorithm and curve come from the SPKI's own OIDs, and EC keys are
 * imported the cheapest way the linked OpenSSL offers, since the join path
 * pays it on every request. Measured on these machines (P-256): OpenSSL 3.0
 * (Node 20) takes 84 µs from a JWK, 138 µs from DER or PEM; OpenSSL 3.5
 * (Node 24) takes 42 µs from a JWK and 18 µs from PEM.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { DerNode, OID, TAG, toPem } from './der.js';
import { curveNamed, judgeKey, type KeyKind, type KeyPolicyCodes } from './keys.js';

/** OpenSSL 3.2 and later decode a PEM SPKI faster than anything else; 3.0 decodes a JWK fastest. */
const PEM_IMPORT_IS_CHEAPEST = (() => {
  const [major = 0, minor = 0] = (process.versions.openssl ?? '').split('.').map(Number);
  return major > 3 || (major === 3 && minor >= 2);
})();

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
 * Checks an SPKI against the policy and returns it as a KeyObject.
 * `malformed` is thrown for structure the policy cannot read; the policy
 * codes for a weak or unsupported key. The policy is judged on the DER,
 * before OpenSSL parses anything (a 16384-bit modulus is refused unread).
 *
 *   SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
 *   RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }   (RFC 8017 §A.1.1)
 */
export function readPolicyKey(spki: Buffer, codes: KeyPolicyCodes & { malformed: () => Error }): PolicyKey {
  const root = DerNode.parse(spki, () => codes.malformed()).expect(TAG.SEQUENCE);
  const algorithm = root.child(0, TAG.SEQUENCE);
  const keyBits = root.child(1, TAG.BIT_STRING);
  const alg = algorithm.child(0).oid();
  if (keyBits.content[0] !== 0) throw codes.malformed();

  if (alg === OID.ecPublicKey) {
    const params = algorithm.children()[1];
    const curveId = params?.tag === TAG.OID ? params.oid() : 'explicit parameters';
    const kind = judgeKey({ type: 'ec', curve: curveId }, codes);
    const curve = curveNamed(curveId)!;
    const point = keyBits.content.subarray(1);
    let publicKey: KeyObject;
    try {
      if (PEM_IMPORT_IS_CHEAPEST) {
        publicKey = createPublicKey(toPem(spki, 'PUBLIC KEY'));
      } else if (point[0] === 0x04 && point.length === 1 + 2 * curve.size) {
        const x = point.subarray(1, 1 + curve.size).toString('base64url');
        const y = point.subarray(1 + curve.size).toString('base64url');
        publicKey = createPublicKey({ key: { kty: 'EC', crv: curve.jwk, x, y }, format: 'jwk' });
      } else {
        publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' }); // compressed points: rare
      }
    } catch {
      throw codes.malformed();
    }
    return { publicKey, kind };
  }

  if (alg === OID.rsaEncryption) {
    const rsaKey = keyBits.inner(1).expect(TAG.SEQUENCE);
    const modulus = rsaKey.child(0, TAG.INTEGER).content;
    const exponent = rsaKey.child(1, TAG.INTEGER).content;
    const kind = judgeKey(
      { type: 'rsa', modulusBits: bitLength(modulus), publicExponent: exponent.length > 8 ? 2n ** 64n : BigInt(`0x${exponent.toString('hex') || '0'}`) },
      codes,
    );
    try {
      return { publicKey: createPublicKey({ key: spki, format: 'der', type: 'spki' }), kind };
    } catch {
      throw codes.malformed();
    }
  }

  judgeKey({ type: alg }, codes); // throws: only EC and RSA keys pass the policy
  throw codes.malformed();
}
