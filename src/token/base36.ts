/**
 * Integer base36, as join tokens use it: big-endian unsigned integers in
 * lower-case base36, left-padded with '0' to a fixed width. base-x keeps
 * leading zero bytes as leading zero digits, which is not integer semantics,
 * so zero bytes are stripped before encoding and the result is normalised to
 * a fixed byte length after decoding.
 */
import baseX from 'base-x';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
const codec = baseX(ALPHABET);
const VALID = /^[0-9a-z]*$/;

/** Encodes `bytes` as an integer in base36, padded to `width` digits. Throws if it does not fit. */
export function encodeBase36(bytes: Uint8Array, width: number): string {
  let start = 0;
  while (start < bytes.length && bytes[start] === 0) start++;
  const digits = start === bytes.length ? '' : codec.encode(bytes.subarray(start));
  if (digits.length > width) throw new RangeError(`value needs ${digits.length} base36 digits, more than ${width}`);
  return digits.padStart(width, '0');
}

/** Decodes lower-case base36 into exactly `byteLength` big-endian bytes, or undefined if invalid or too large. */
export function decodeBase36(text: string, byteLength: number): Buffer | undefined {
  if (!VALID.test(text)) return undefined;
  const trimmed = text.replace(/^0+/, '');
  const out = Buffer.alloc(byteLength);
  if (trimmed === '') return out;
  const raw = codec.decodeUnsafe(trimmed);
  if (raw === undefined) return undefined;
  let start = 0;
  while (start < raw.length && raw[start] === 0) start++;
  const significant = raw.subarray(start);
  if (significant.length > byteLength) return undefined;
  out.set(significant, byteLength - significant.length);
  return out;
}
