/**
 * Sealing secrets under the cluster data key (DESIGN §10): the CA key and
 * external-CA auth keys are stored as AES-256-GCM ciphertext, so the store
 * (etcd, or a copied LevelDB) never holds them in clear. Each seal has a
 * fresh 96-bit nonce; the record's key is bound as additional data, so a
 * sealed value cannot be moved to another record.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { MusterError } from '../core/errors.js';

/** Bytes in a data key. */
export const DATA_KEY_BYTES = 32;

/** A sealed secret as the store keeps it. */
export interface SealedValue {
  alg: 'A256GCM';
  iv: string;
  data: string;
}

/** A fresh random data key. */
export function generateDataKey(): Buffer {
  return randomBytes(DATA_KEY_BYTES);
}

function checkKey(key: Buffer): void {
  if (key.length !== DATA_KEY_BYTES) throw new MusterError('STATE_CORRUPT', 'the cluster data key has the wrong length');
}

/** Encrypts `plain` under `key`, bound to `context` (the record it belongs in). */
export function seal(key: Buffer, plain: string | Buffer, context: string): SealedValue {
  checkKey(key);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const data = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  return { alg: 'A256GCM', iv: iv.toString('base64'), data: data.toString('base64') };
}

/** Decrypts a sealed value; STATE_CORRUPT when the key is not the one it was sealed with, or it was tampered with. */
export function unseal(key: Buffer, sealed: SealedValue, context: string): Buffer {
  checkKey(key);
  const iv = Buffer.from(sealed.iv, 'base64');
  const data = Buffer.from(sealed.data, 'base64');
  if (iv.length !== 12 || data.length < 16) throw new MusterError('STATE_CORRUPT', `the sealed ${context} is malformed`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(data.subarray(data.length - 16));
    return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]);
  } catch (cause) {
    throw new MusterError('STATE_CORRUPT', `the ${context} cannot be decrypted with this manager's data key`, {
      cause,
      hint: 'the data key in manager/data.key does not belong to this cluster',
    });
  }
}
