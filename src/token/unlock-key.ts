/**
 * SWMKEY unlock keys, as Docker Swarm's autolock prints them
 * (SwarmKit manager/encryption: `SWMKEY-1-` and 32 random bytes in
 * unpadded standard base64), and the key-encryption key derived from one.
 *
 * KDF: HKDF-SHA256. The unlock key is 256 bits from the CSPRNG, not a
 * password, so a slow password KDF (scrypt, Argon2) would add nothing but
 * seconds to every unlock; HKDF gives domain separation (one derived key
 * wraps the data key, another names the key) and a fixed-length key for
 * AES-256-GCM.
 */
import { hkdfSync } from 'node:crypto';
import { MusterError } from '../core/errors.js';
import type { Random } from '../core/random.js';

/** What every unlock key starts with. */
export const UNLOCK_KEY_PREFIX = 'SWMKEY-1-';
/** Bytes of key material in an unlock key. */
export const UNLOCK_KEY_BYTES = 32;

const SALT = Buffer.from('muster autolock v1', 'utf8');

/** Writes an unlock key: `SWMKEY-1-` and the 32 bytes in base64 without padding (43 characters). */
export function formatUnlockKey(key: Buffer): string {
  if (key.length !== UNLOCK_KEY_BYTES) throw new MusterError('INTERNAL', 'an unlock key holds 32 bytes');
  return `${UNLOCK_KEY_PREFIX}${key.toString('base64').replace(/=+$/, '')}`;
}

/** A fresh unlock key's bytes. */
export function generateUnlockKey(random: Random): Buffer {
  return random.bytes(UNLOCK_KEY_BYTES);
}

/** Reads an unlock key (surrounding white space ignored); UNLOCK_KEY_INVALID without quoting it. */
export function parseUnlockKey(text: string): Buffer {
  const trimmed = text.trim();
  if (!trimmed.startsWith(UNLOCK_KEY_PREFIX)) throw new MusterError('UNLOCK_KEY_INVALID', `an unlock key starts with ${UNLOCK_KEY_PREFIX}`);
  const body = trimmed.slice(UNLOCK_KEY_PREFIX.length);
  if (!/^[A-Za-z0-9+/]{43}$/.test(body)) throw new MusterError('UNLOCK_KEY_INVALID', `an unlock key is ${UNLOCK_KEY_PREFIX} and 43 base64 characters`);
  const key = Buffer.from(body, 'base64');
  // The last character carries 2 padding bits: only one spelling per key.
  if (key.length !== UNLOCK_KEY_BYTES || formatUnlockKey(key) !== trimmed)
    throw new MusterError('UNLOCK_KEY_INVALID', 'the unlock key does not decode to 32 bytes');
  return key;
}

function derive(key: Buffer, info: string, length: number): Buffer {
  return Buffer.from(hkdfSync('sha256', key, SALT, Buffer.from(info, 'utf8'), length));
}

/** The AES-256-GCM key the data key is wrapped under. */
export function keyEncryptionKey(unlockKey: Buffer): Buffer {
  return derive(unlockKey, 'muster autolock: data key wrapping', 32);
}

/** A public name for an unlock key (16 hex digits): which key wraps a data key, without revealing it. */
export function unlockKeyId(unlockKey: Buffer): string {
  return derive(unlockKey, 'muster autolock: key id', 8).toString('hex');
}
