/**
 * The renewer (DESIGN §7): renews the node certificate at a uniformly random
 * point between 50% and 80% of its lifetime (counted from its issue, not
 * from the backdated NotBefore), at once when the manager says so (the
 * session passes its word on, see session.ts), and
 * retries failures with exponential backoff and full jitter (base 5 s, cap
 * 1 h or a tenth of the lifetime) for as long as the certificate is valid. Time and chance are
 * injected, so tests drive it with a fake clock and never sleep.
 */
import { backoffDelay } from '../core/backoff.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { isMusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import { issuedAt } from '../pki/issue.js';

/** The validity of the certificate the node holds now. */
export interface Validity {
  notBefore: number;
  notAfter: number;
}

/** The retry backoff's ceiling never drops below this, however short the certificate (or unknown its issue). */
const MIN_BACKOFF_CAP_MS = 30_000;

/** Tuning; the defaults follow DESIGN §7. */
export interface RenewerOptions {
  /** Fraction of the lifetime where the window opens and closes. */
  windowStart: number;
  windowEnd: number;
  backoffBaseMs: number;
  backoffCapMs: number;
}

/** DESIGN §7 defaults. */
export const DEFAULT_RENEWER_OPTIONS: RenewerOptions = {
  windowStart: 0.5,
  windowEnd: 0.8,
  backoffBaseMs: 5_000,
  backoffCapMs: 3_600_000,
};

/** What the renewer works with. */
export interface RenewerDeps {
  clock: Clock;
  random: Random;
  logger: Logger;
  /** The certificate held now. */
  current(): Validity;
  /** Makes a fresh key, gets it certified and stores the pair atomically; returns the new validity. */
  renew(reason: string): Promise<Validity>;
  /** Called once when the renewer stops for good: the certificate expired, or the node was removed. */
  onFatal?(reason: 'expired' | 'removed', message: string): void;
  options?: Partial<RenewerOptions>;
}

/** Error codes after which retrying cannot help. */
export const FATAL_CODES: ReadonlySet<string> = new Set(['NODE_REMOVED', 'CERT_EXPIRED']);

/** The renewal schedule of one node (its session with the managers is a Session's). */
export class Renewer {
  private readonly opts: RenewerOptions;
  private renewTimer: TimerHandle | undefined;
  private running = false;
  private inFlight: Promise<void> | undefined;
  private failures = 0;
  /** The lifetime (from its issue) of the certificate last scheduled: it bounds the retry backoff. */
  private lifetimeMs: number | undefined;
  /** When the next renewal is due (ms since epoch), for status output and tests. */
  nextRenewalAt: number | undefined;

  constructor(private readonly deps: RenewerDeps) {
    this.opts = { ...DEFAULT_RENEWER_OPTIONS, ...deps.options };
  }

  /** Picks a moment in the renewal window of `validity`, counted from when it was issued (see issuedAt). */
  pickRenewalTime(validity: Validity): number {
    const origin = issuedAt(validity, this.deps.clock.now());
    const lifetime = Math.max(0, validity.notAfter - origin);
    this.lifetimeMs = lifetime;
    const fraction = this.opts.windowStart + (this.opts.windowEnd - this.opts.windowStart) * this.deps.random.float();
    return origin + Math.floor(lifetime * fraction);
  }

  /**
   * The delay before retry number `failures` (1-based): full jitter over an
   * exponential ceiling. The ceiling is at most a tenth of the lifetime of
   * the certificate last scheduled (never under 30 s): a 5-minute certificate
   * retries within 30 s, not within the hour a 90-day one may wait.
   */
  backoffDelay(failures: number): number {
    const share = this.lifetimeMs === undefined ? this.opts.backoffCapMs : Math.max(MIN_BACKOFF_CAP_MS, Math.floor(this.lifetimeMs / 10));
    const capMs = Math.max(this.opts.backoffBaseMs, Math.min(this.opts.backoffCapMs, share));
    return backoffDelay({ baseMs: this.opts.backoffBaseMs, capMs }, failures, this.deps.random);
  }

  /** Starts the schedule. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(this.pickRenewalTime(this.deps.current()));
  }

  /** Stops the schedule; waits for a renewal under way. Idempotent. */
  async stop(): Promise<void> {
    this.running = false;
    this.renewTimer?.cancel();
    this.renewTimer = undefined;
    await this.inFlight;
  }

  /** Renews now (the manager asked, or a user did); a renewal already under way is not repeated. */
  renewNow(reason: string): Promise<void> {
    if (!this.running) return Promise.resolve();
    this.inFlight ??= this.attempt(reason).finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /** Resolves once the renewal under way, if any, has ended (however it ended). */
  settled(): Promise<void> {
    return this.inFlight?.catch(() => undefined) ?? Promise.resolve();
  }

  private schedule(at: number): void {
    this.renewTimer?.cancel();
    if (!this.running) return;
    this.nextRenewalAt = at;
    this.renewTimer = this.deps.clock.setTimer(Math.max(0, at - this.deps.clock.now()), () => {
      void this.renewNow('scheduled');
    });
  }

  private async attempt(reason: string): Promise<void> {
    const now = this.deps.clock.now();
    const held = this.deps.current();
    // An expired certificate still renews within the cluster's grace (the
    // managers accept it from the key that holds it); past the grace the
    // managers say CERT_EXPIRED, which stops the renewer below.
    const expired = now >= held.notAfter;
    try {
      const next = await this.deps.renew(reason);
      this.failures = 0;
      const at = this.pickRenewalTime(next);
      this.deps.logger.info(
        { notAfter: new Date(next.notAfter).toISOString(), nextRenewal: new Date(at).toISOString(), reason },
        `renewed until ${new Date(next.notAfter).toISOString()}; next renewal ${new Date(at).toISOString()}`,
      );
      this.schedule(at);
    } catch (error) {
      if (isMusterError(error) && FATAL_CODES.has(error.code)) {
        this.fatal(error.code === 'NODE_REMOVED' ? 'removed' : 'expired', error.message);
        return;
      }
      this.failures += 1;
      // Before expiry, retry no later than the expiry; after it, on the backoff alone.
      const delay = expired ? this.backoffDelay(this.failures) : Math.min(this.backoffDelay(this.failures), Math.max(0, held.notAfter - now));
      const why = error instanceof Error ? error.message : String(error);
      this.deps.logger.warn(
        { attempt: this.failures, retryInMs: delay, code: isMusterError(error) ? error.code : 'UNKNOWN' },
        `renewal failed; retrying in ${Math.ceil(delay / 1000)}s because ${why}`,
      );
      this.schedule(now + delay);
    }
  }

  /** Stops for good (also when a poll learns it): logs why and calls onFatal, once. */
  fatal(reason: 'expired' | 'removed', message: string): void {
    if (!this.running) return;
    this.deps.logger.error({ reason }, message);
    this.running = false;
    this.renewTimer?.cancel();
    this.deps.onFatal?.(reason, message);
  }
}
