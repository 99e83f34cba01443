/**
 * Retrying with exponential backoff and full jitter (AWS's "full jitter":
 * a uniform delay below an exponentially growing ceiling), on the injected
 * Clock and Random so tests move a fake clock instead of sleeping. The one
 * backoff every retry loop in muster uses: joins, renewals, manager polls.
 */
import type { Clock } from './clock.js';
import type { Random } from './random.js';

/** The shape of a backoff: the first ceiling and the largest one. */
export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

/** The ceiling before retry number `attempt` (1-based): base doubling per attempt, capped. */
export function backoffCeiling(policy: BackoffPolicy, attempt: number): number {
  return Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 30));
}

/** The delay before retry number `attempt` (1-based): uniform in [0, ceiling). */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: Random): number {
  return Math.floor(random.float() * backoffCeiling(policy, attempt));
}

/** Resolves after `ms` of the clock's time. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}

/** What a retry loop is told about a failed attempt. */
export interface RetryNotice {
  error: unknown;
  /** The attempt that failed (1-based). */
  attempt: number;
  attempts: number;
  /** When the next attempt starts (ms since epoch). */
  nextAt: number;
}

/** Options for {@link retry}. */
export interface RetryOptions {
  clock: Clock;
  random: Random;
  policy: BackoffPolicy;
  /** Attempts in all, the first included. */
  attempts: number;
  /** Whether a failure may be retried; others are thrown at once. */
  retryable: (error: unknown) => boolean;
  /** A delay the failure itself asks for (a server's Retry-After), instead of the backoff. */
  delayFor?: (error: unknown) => number | undefined;
  onRetry?: (notice: RetryNotice) => void;
}

/** Runs `fn` until it succeeds, a failure is not retryable, or the attempts are used up. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (attempt >= options.attempts || !options.retryable(error)) throw error;
      const delay = options.delayFor?.(error) ?? backoffDelay(options.policy, attempt, options.random);
      options.onRetry?.({ error, attempt, attempts: options.attempts, nextAt: options.clock.now() + delay });
      await sleep(options.clock, delay);
    }
  }
}
