/**
 * SWMTKN join tokens (DESIGN §2), compatible with Docker Swarm's:
 * formatting, parsing, generating, and the constant-time comparison that
 * decides a presented token's role.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { MusterError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import type { NodeRole } from '../core/roles.js';
import { decodeBase36, encodeBase36 } from './base36.js';

/** Digits of the digest part: SHA-256 in base36. */
export const DIGEST_DIGITS = 50;
/** Digits of the secret part: 16 bytes in base36. */
export const SECRET_DIGITS = 25;
/** Bytes of the secret. */
export const SECRET_BYTES = 16;

/** A parsed join token. */
export interface JoinToken {
  version: 1 | 2;
  /** SWMTKN-2 only: the cluster runs in FIPS mode. */
  fips: boolean;
  /** SHA-256 of the root CA bundle's exact PEM bytes (32 bytes). */
  digest: Buffer;
  /** The shared secret (16 bytes). */
  secret: Buffer;
}

/** Writes a token: `SWMTKN-1-<digest>-<secret>` or `SWMTKN-2-<0|1>-<digest>-<secret>`. */
export function formatJoinToken(token: JoinToken): string {
  const digest = encodeBase36(token.digest, DIGEST_DIGITS);
  const secret = encodeBase36(token.secret, SECRET_DIGITS);
  return token.version === 1 ? `SWMTKN-1-${digest}-${secret}` : `SWMTKN-2-${token.fips ? 1 : 0}-${digest}-${secret}`;
}

const HINT = "a join token looks like SWMTKN-1-<50 base36 characters>-<25 base36 characters>; get one with 'muster join-token worker'";

function invalid(why: string): MusterError {
  // Never quote the token: it is a secret, and error messages reach logs.
  return new MusterError('TOKEN_INVALID', `invalid join token: ${why}`, { hint: HINT });
}

/**
 * Reads a join token. Wire format:
 *   SWMTKN-1-<digest>-<secret>          (4 dash-separated parts)
 *   SWMTKN-2-<fips 0|1>-<digest>-<secret> (5 parts)
 * <digest> is SHA-256 of the root bundle as a big-endian integer in
 * lower-case base36, zero-padded to 50 digits; <secret> is 16 random bytes
 * the same way in 25 digits. Anything else throws TOKEN_INVALID.
 */
export function parseJoinToken(text: unknown): JoinToken {
  if (typeof text !== 'string') throw invalid('it is not a string');
  const trimmed = text.trim();
  if (trimmed.length > 200) throw invalid('it is too long');
  const parts = trimmed.split('-');
  if (parts[0] !== 'SWMTKN') throw invalid("it does not start with 'SWMTKN-'");
  let version: 1 | 2;
  let fips = false;
  let rest: string[];
  if (parts[1] === '1') {
    if (parts.length !== 4) throw invalid(`a version 1 token has 4 parts separated by '-', this one has ${parts.length}`);
    version = 1;
    rest = parts.slice(2);
  } else if (parts[1] === '2') {
    if (parts.length !== 5) throw invalid(`a version 2 token has 5 parts separated by '-', this one has ${parts.length}`);
    if (parts[2] !== '0' && parts[2] !== '1') throw invalid('the FIPS flag of a version 2 token must be 0 or 1');
    version = 2;
    fips = parts[2] === '1';
    rest = parts.slice(3);
  } else {
    throw invalid('unsupported token version');
  }
  const [digestText = '', secretText = ''] = rest;
  if (digestText.length !== DIGEST_DIGITS) throw invalid(`the digest part has ${digestText.length} characters, expected ${DIGEST_DIGITS}`);
  if (secretText.length !== SECRET_DIGITS) throw invalid(`the secret part has ${secretText.length} characters, expected ${SECRET_DIGITS}`);
  const digest = decodeBase36(digestText, 32);
  if (digest === undefined) throw invalid('the digest part is not lower-case base36 of a SHA-256 value');
  const secret = decodeBase36(secretText, SECRET_BYTES);
  if (secret === undefined) throw invalid('the secret part is not lower-case base36 of 16 bytes');
  return { version, fips, digest, secret };
}

/** Makes a version 1 token for a root digest with a fresh 16-byte secret. */
export function generateJoinToken(digest: Buffer, random: Random): string {
  return formatJoinToken({ version: 1, fips: false, digest, secret: random.bytes(SECRET_BYTES) });
}

/**
 * The role whose current token has the SHA-256 `presented` hashes to, or
 * undefined. The store keeps only the tokens' hashes (and sealed copies).
 * Compares against both every time, in constant time over equal-length
 * hashes, so neither timing nor length tells an attacker how close a guess was.
 */
export function matchJoinToken(presented: string, current: Readonly<Record<NodeRole, Buffer>>): NodeRole | undefined {
  const probe = createHash('sha256').update(presented, 'utf8').digest();
  const worker = timingSafeEqual(probe, current.worker);
  const manager = timingSafeEqual(probe, current.manager);
  if (manager) return 'manager';
  if (worker) return 'worker';
  return undefined;
}
