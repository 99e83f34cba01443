/**
 * Keys: generation for nodes and roots, and the key policy every public key
 * muster certifies must meet (EC P-256/P-384, RSA >= 2048).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { generateKeyPair as generateKeyPairCb } from 'node:crypto';
import { MusterError, type ErrorCode } from '../core/errors.js';

const generateKeyPairAsync = promisify(generateKeyPairCb);

/** A freshly made key pair: the private half as PKCS#8 PEM, the public half as an object. */
export interface GeneratedKey {
  privateKeyPem: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** Makes an ECDSA P-256 key (the default for nodes, users and roots), off the main thread. */
export async function generateNodeKey(): Promise<GeneratedKey> {
  const { privateKey, publicKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicKey, privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** Synchronous twin of {@link generateNodeKey}, for benchmarks and fixtures. */
export function generateNodeKeySync(): GeneratedKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicKey, privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** The kinds of key muster accepts. */
export type KeyKind = 'ec-p256' | 'ec-p384' | 'rsa';

/** Error codes to use when a key fails the policy, per context (CSR vs CA import). */
export interface KeyPolicyCodes {
  weak: ErrorCode;
  unsupported: ErrorCode;
}

/** A curve muster accepts, under every name it goes by (Node's, JOSE's, its OID). */
export interface Curve {
  kind: KeyKind;
  /** The JWK `crv`. */
  jwk: string;
  /** Bytes of one coordinate. */
  size: number;
  names: readonly string[];
}

/**
 * The key policy, written once: EC P-256 and P-384; RSA of 2048 to 8192 bits
 * with the public exponent 65537, as every key generator makes them. A huge
 * modulus or exponent costs milliseconds per operation and buys nothing; a
 * small one (3) is where RSA's known pitfalls live (forged signatures
 * against lax verifiers, Coppersmith's attacks on encryption).
 */
export const KEY_POLICY = {
  curves: [
    { kind: 'ec-p256', jwk: 'P-256', size: 32, names: ['prime256v1', 'P-256', '1.2.840.10045.3.1.7'] },
    { kind: 'ec-p384', jwk: 'P-384', size: 48, names: ['secp384r1', 'P-384', '1.3.132.0.34'] },
  ] as const satisfies readonly Curve[],
  rsa: { minBits: 2048, maxBits: 8192, exponent: 65537n },
} as const;

/** The accepted curve a name or OID denotes, if any. */
export function curveNamed(name: string | undefined): Curve | undefined {
  return KEY_POLICY.curves.find((curve) => name !== undefined && (curve.names as readonly string[]).includes(name));
}

/** What the policy looks at in a key. */
export interface KeyFacts {
  type: 'ec' | 'rsa' | string | undefined;
  curve?: string | undefined;
  modulusBits?: number | undefined;
  publicExponent?: bigint | undefined;
}

/** Judges a key against the policy; returns its kind or throws with the context's codes. */
export function judgeKey(facts: KeyFacts, codes: KeyPolicyCodes): KeyKind {
  if (facts.type === 'ec') {
    const curve = curveNamed(facts.curve);
    if (curve === undefined) throw new MusterError(codes.unsupported, `the EC curve ${facts.curve ?? 'unknown'} is not supported (use P-256 or P-384)`);
    return curve.kind;
  }
  if (facts.type === 'rsa') {
    const { minBits, maxBits, exponent: wanted } = KEY_POLICY.rsa;
    const bits = facts.modulusBits ?? 0;
    if (bits < minBits) throw new MusterError(codes.weak, `the RSA key has ${bits} bits; at least ${minBits} are required`);
    if (bits > maxBits) throw new MusterError(codes.unsupported, `the RSA key has ${bits} bits; at most ${maxBits} are accepted`);
    const exponent = facts.publicExponent ?? 0n;
    if (exponent !== wanted)
      throw new MusterError(
        codes.unsupported,
        `the RSA public exponent is ${exponent > 2n ** 32n ? 'over 2^32' : String(exponent)}; only ${wanted} is accepted`,
      );
    return 'rsa';
  }
  throw new MusterError(codes.unsupported, `keys of type ${facts.type ?? 'unknown'} are not supported (use EC P-256/P-384 or RSA of 2048 to 8192 bits)`);
}

/** Checks a public or private key object against the policy. */
export function checkKeyPolicy(key: KeyObject, codes: KeyPolicyCodes): KeyKind {
  const details = key.asymmetricKeyDetails ?? {};
  return judgeKey(
    { type: key.asymmetricKeyType, curve: details.namedCurve, modulusBits: details.modulusLength, publicExponent: details.publicExponent },
    codes,
  );
}

/** The signature hash muster pairs with a key kind. */
export function hashFor(kind: KeyKind): 'sha256' | 'sha384' {
  return kind === 'ec-p384' ? 'sha384' : 'sha256';
}

/** Reads a PEM private key, or throws `code`. */
export function readPrivateKey(pem: string | Buffer, code: ErrorCode): KeyObject {
  try {
    const key = createPrivateKey({ key: pem, format: 'pem' });
    if (key.type !== 'private') throw new Error('not a private key');
    return key;
  } catch (cause) {
    throw new MusterError(code, undefined, { cause });
  }
}

/** The SubjectPublicKeyInfo DER of a key. */
export function spkiDer(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'der' });
}
