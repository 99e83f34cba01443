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

/** Checks a public or private key against the policy; returns its kind or throws with the context's codes. */
export function checkKeyPolicy(key: KeyObject, codes: KeyPolicyCodes): KeyKind {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'ec') {
    if (details.namedCurve === 'prime256v1') return 'ec-p256';
    if (details.namedCurve === 'secp384r1') return 'ec-p384';
    throw new MusterError(codes.unsupported, `the EC curve ${details.namedCurve ?? 'unknown'} is not supported (use P-256 or P-384)`);
  }
  if (type === 'rsa') {
    const bitsLength = details.modulusLength ?? 0;
    if (bitsLength < 2048) throw new MusterError(codes.weak, `the RSA key has ${bitsLength} bits; at least 2048 are required`);
    return 'rsa';
  }
  throw new MusterError(codes.unsupported, `keys of type ${type ?? 'unknown'} are not supported (use EC P-256/P-384 or RSA >= 2048)`);
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
