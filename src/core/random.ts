/**
 * Randomness as an input. Secrets, serials and IDs come from a Random, so
 * tests can make them reproducible and production uses the CSPRNG.
 */
import { createHash, randomBytes } from 'node:crypto';

/** A source of random bytes and uniform floats. */
export interface Random {
  /** `n` random bytes. */
  bytes(n: number): Buffer;
  /** A uniform float in [0, 1). */
  float(): number;
}

/** The operating system's CSPRNG. */
export const systemRandom: Random = {
  bytes: (n) => randomBytes(n),
  float: () => randomBytes(6).readUIntBE(0, 6) / 2 ** 48,
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
