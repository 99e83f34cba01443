/**
 * The cluster data key wrapped for one manager (DESIGN §10): the store holds
 * the current data key once per serving manager, each copy encrypted to that
 * manager's certificate key, so a manager that was not told of a re-key by
 * the manager that made it (which may have died a moment later) still reads
 * the new key from the store with its own private key, and a removed
 * manager, whose copy the re-key left out, cannot.
 *
 * EC keys: ECDH with a fresh key on the same curve (ECIES), HKDF-SHA256 over
 * the shared secret (salt: the fresh public key; info: the context), then
 * AES-256-GCM with the context as additional data. RSA keys: RSA-OAEP with
 * SHA-256, the context as its label.
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { MusterError } from '../core/errors.js';

/** A data key wrapped to one public key, as the store keeps it. */
export type WrappedKey = { alg: 'ECDH-ES+A256GCM'; epk: string; iv: string; data: string } | { alg: 'RSA-OAEP-256'; data: string };

function fail(context: string, cause?: unknown): MusterError {
  return new MusterError('STATE_CORRUPT', `the ${context} cannot be unwrapped with this manager's key`, cause === undefined ? {} : { cause });
}

function ecKey(shared: Buffer, epk: Buffer, context: string): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, epk, Buffer.from(`muster key wrap: ${context}`, 'utf8'), 32));
}

/** Wraps `secret` (a data key) to `publicKey` (EC P-256/P-384 or RSA), bound to `context`. */
export function wrapKey(secret: Buffer, publicKey: KeyObject, context: string): WrappedKey {
  if (publicKey.asymmetricKeyType === 'rsa') {
    const data = publicEncrypt(
      { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: Buffer.from(context, 'utf8') },
      secret,
    );
    return { alg: 'RSA-OAEP-256', data: data.toString('base64') };
  }
  if (publicKey.asymmetricKeyType !== 'ec') throw new MusterError('INTERNAL', `cannot wrap a key to a ${publicKey.asymmetricKeyType} key`);
  const namedCurve = publicKey.asymmetricKeyDetails?.namedCurve;
  if (namedCurve === undefined) throw new MusterError('INTERNAL', 'cannot wrap a key to an EC key of unknown curve');
  const ephemeral = generateKeyPairSync('ec', { namedCurve });
  const epk = ephemeral.publicKey.export({ format: 'der', type: 'spki' });
  const key = ecKey(diffieHellman({ privateKey: ephemeral.privateKey, publicKey }), epk, context);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const data = Buffer.concat([cipher.update(secret), cipher.final(), cipher.getAuthTag()]);
  return { alg: 'ECDH-ES+A256GCM', epk: epk.toString('base64'), iv: iv.toString('base64'), data: data.toString('base64') };
}

/** Unwraps with the private key the wrap was made for; STATE_CORRUPT for any other key, context or a tampered wrap. */
export function unwrapKey(wrapped: WrappedKey, privateKey: KeyObject, context: string): Buffer {
  try {
    if (wrapped.alg === 'RSA-OAEP-256') {
      return privateDecrypt(
        { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: Buffer.from(context, 'utf8') },
        Buffer.from(wrapped.data, 'base64'),
      );
    }
    const epk = Buffer.from(wrapped.epk, 'base64');
    const iv = Buffer.from(wrapped.iv, 'base64');
    const data = Buffer.from(wrapped.data, 'base64');
    if (iv.length !== 12 || data.length < 16) throw fail(context);
    const key = ecKey(diffieHellman({ privateKey, publicKey: createPublicKey({ key: epk, format: 'der', type: 'spki' }) }), epk, context);
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(data.subarray(data.length - 16));
    return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]);
  } catch (cause) {
    if (cause instanceof MusterError) throw cause;
    throw fail(context, cause);
  }
}
