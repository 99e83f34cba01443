/**
 * How long the suite waits, in one place: every bound on a wait (for a line
 * printed, a port open, a file written, a test or hook to end) is a figure
 * for an idle machine times MUSTER_TEST_SLOWDOWN (default 1), so a busy or
 * slow machine gives the same events more time instead of failing on a fixed
 * limit (`MUSTER_TEST_SLOWDOWN=3 npm test`; scripts/test-under-load.sh).
 * The limits only bound waits for events: a test never waits them out.
 */

/** The factor from MUSTER_TEST_SLOWDOWN: a positive number, 1 when unset. */
export function slowdownFactor(env: Record<string, string | undefined> = process.env): number {
  const raw = env.MUSTER_TEST_SLOWDOWN;
  if (raw === undefined || raw === '') return 1;
  const factor = Number(raw);
  // A typo must not shrink every limit to nothing (or NaN, which setTimeout treats as 1 ms).
  if (!Number.isFinite(factor) || factor < 1) throw new Error(`MUSTER_TEST_SLOWDOWN must be a number ≥ 1, not ${JSON.stringify(raw)}`);
  return factor;
}

const FACTOR = slowdownFactor();

/** `ms` (a bound measured on an idle machine) scaled by MUSTER_TEST_SLOWDOWN. */
export function slow(ms: number): number {
  return Math.round(ms * FACTOR);
}
