/**
 * The seed of the suite's property tests (fast-check): fixed, so a run that
 * fails fails again the same way; MUSTER_PROPERTY_SEED picks another (the
 * seed is in each property test's name, and fast-check prints it with the
 * path of a counterexample). `npm run fuzz` draws a new seed each run.
 */
const raw = process.env.MUSTER_PROPERTY_SEED;

/** The fast-check seed every property test of the suite runs from. */
export const PROPERTY_SEED = raw === undefined || raw === '' ? 20_261_206 : Number(raw);
if (!Number.isSafeInteger(PROPERTY_SEED)) throw new Error(`MUSTER_PROPERTY_SEED must be an integer, not ${JSON.stringify(raw)}`);

/** fast-check parameters: `numRuns` cases from PROPERTY_SEED. */
export function seeded(numRuns: number): { numRuns: number; seed: number } {
  return { numRuns, seed: PROPERTY_SEED };
}

/** A property test's name with its seed, so a failure names how to replay it. */
export function withSeed(name: string): string {
  return `${name} (fast-check seed ${PROPERTY_SEED})`;
}
