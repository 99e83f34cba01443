/**
 * Counts failed join attempts per source address and blocks an address that
 * fails too often, so join tokens cannot be guessed at speed. Successful
 * joins do not count: a rack of nodes booting at once is not an attack.
 */
import type { Clock } from '../../core/clock.js';

/** Limits for {@link FailureLimiter}. */
export interface FailureLimits {
  /** Failures allowed per window before the address is blocked. */
  maxFailures: number;
  windowMs: number;
  /** Addresses tracked at most; the oldest are forgotten first. */
  maxAddresses: number;
}

/** Defaults: 10 failures a minute per address. */
export const DEFAULT_FAILURE_LIMITS: FailureLimits = { maxFailures: 10, windowMs: 60_000, maxAddresses: 100_000 };

interface Window {
  start: number;
  failures: number;
}

/** A fixed-window failure counter per address. */
export class FailureLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly clock: Clock,
    private readonly limits: FailureLimits = DEFAULT_FAILURE_LIMITS,
  ) {}

  /** Milliseconds until `address` may try again, or 0 when it may now. */
  retryAfterMs(address: string): number {
    const window = this.current(address);
    if (window === undefined || window.failures < this.limits.maxFailures) return 0;
    return window.start + this.limits.windowMs - this.clock.now();
  }

  /** Counts one failure for `address`. */
  recordFailure(address: string): void {
    const window = this.current(address) ?? { start: this.clock.now(), failures: 0 };
    window.failures += 1;
    this.windows.delete(address); // re-insert: Map order is the eviction order
    this.windows.set(address, window);
    if (this.windows.size > this.limits.maxAddresses) {
      const oldest = this.windows.keys().next().value;
      if (oldest !== undefined) this.windows.delete(oldest);
    }
  }

  private current(address: string): Window | undefined {
    const window = this.windows.get(address);
    if (window === undefined) return undefined;
    if (this.clock.now() >= window.start + this.limits.windowMs) {
      this.windows.delete(address);
      return undefined;
    }
    return window;
  }
}
