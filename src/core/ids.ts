/**
 * Node and cluster IDs: 25 lower-case base36 characters (~129 bits), the
 * shape of SwarmKit's IDs, drawn from the injected Random.
 */
import { customRandom } from 'nanoid';
import type { Random } from './random.js';

/** The ID alphabet. */
export const ID_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
/** The ID length. */
export const ID_LENGTH = 25;
/** What a well-formed ID looks like. */
export const ID_PATTERN = /^[0-9a-z]{25}$/;

/** Makes a fresh ID from `random`. */
export function newId(random: Random): string {
  return customRandom(ID_ALPHABET, ID_LENGTH, (size) => random.bytes(size))();
}
