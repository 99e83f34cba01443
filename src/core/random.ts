/**
 * Randomness as an input. Secrets, serials and IDs come from a Random, so
 * tests can make them reproducible and production uses the CSPRNG.
 */
import { createHash, randomBytes, randomFillSync } from 'node:crypto';

/** A source of random bytes and uniform floats. */
export interface Random {
  /** `n` random bytes. */
  bytes(n: number): Buffer;
  /** A uniform float in [0, 1). */
  float(): number;
}

/** Bytes drawn from the CSPRNG at once: each draw costs ~10 µs whatever its size (OpenSSL 3's DRBG), and a join takes three. */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let offset = 0;

/** `n` bytes from the pool (a copy; the bytes handed out are zeroed in the pool), or straight from the CSPRNG when large. */
function pooledBytes(n: number): Buffer {
  if (n > POOL_BYTES / 8) return randomBytes(n);
  if (offset + n > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafeSlow(POOL_BYTES));
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  pool.fill(0, offset, offset + n);
  offset += n;
  return out;
}

/** The operating system's CSPRNG (OpenSSL's), drawn in blocks as nanoid does. */
export const systemRandom: Random = {
  bytes: pooledBytes,
  float: () => pooledBytes(6).readUIntBE(0, 6) / 2 ** 48,
};

/** A reproducible Random for tests and simulations: SHA-256 in counter mode. Never for secrets. */
export function seededRandom(seed: string | number): Random {
  let counter = 0;
  let pool = Buffer.alloc(0);
  const take = (n: number): Buffer => {
    while (pool.length < n) {
      const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
      pool = Buffer.concat([pool, block]);
    }
    const out = pool.subarray(0, n);
    pool = pool.subarray(n);
    return Buffer.from(out);
  };
  return {
    bytes: take,
    float: () => take(6).readUIntBE(0, 6) / 2 ** 48,
  };
}
