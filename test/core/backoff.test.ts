import { describe, expect, it } from 'vitest';
import { backoffCeiling, backoffDelay, retry } from '../../src/core/backoff.js';
import { FakeClock } from '../../src/core/clock.js';
import { seededRandom, type Random } from '../../src/core/random.js';

const fixed = (x: number): Random => ({ bytes: (n) => Buffer.alloc(n), float: () => x });

describe('backoff', () => {
  it('doubles the ceiling per attempt up to the cap, and draws uniformly below it (full jitter)', () => {
    const policy = { baseMs: 5_000, capMs: 3_600_000 };
    expect([1, 2, 3, 4].map((a) => backoffCeiling(policy, a))).toEqual([5_000, 10_000, 20_000, 40_000]);
    expect(backoffCeiling(policy, 40)).toBe(3_600_000);
    expect(backoffDelay(policy, 3, fixed(0.5))).toBe(10_000);
    const random = seededRandom('backoff');
    const draws = Array.from({ length: 2_000 }, () => backoffDelay(policy, 3, random));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...draws)).toBeLessThan(20_000);
    expect(draws.filter((d) => d < 10_000).length / draws.length).toBeGreaterThan(0.4); // not bunched at the top
  });

  it('retries retryable failures on the injected clock, says when the next attempt is, and gives up after the attempts', async () => {
    const clock = new FakeClock(0);
    const notices: number[] = [];
    let calls = 0;
    const running = retry(
      async () => {
        calls += 1;
        throw new Error('down');
      },
      { clock, random: fixed(0.5), policy: { baseMs: 1_000, capMs: 60_000 }, attempts: 3, retryable: () => true, onRetry: (n) => notices.push(n.nextAt) },
    ).catch((e: unknown) => e);
    for (let i = 0; i < 10 && calls < 3; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (clock.pending() > 0) clock.advance(clock.nextDue()! - clock.now());
    }
    expect(((await running) as Error).message).toBe('down');
    expect(calls).toBe(3);
    expect(notices).toEqual([500, 1_500]);
  });

  it('throws a non-retryable failure at once', async () => {
    let calls = 0;
    const error = await retry(
      async () => {
        calls += 1;
        throw new Error('fatal');
      },
      { clock: new FakeClock(0), random: fixed(0), policy: { baseMs: 1, capMs: 1 }, attempts: 5, retryable: () => false },
    ).catch((e: unknown) => e);
    expect((error as Error).message).toBe('fatal');
    expect(calls).toBe(1);
  });
});
