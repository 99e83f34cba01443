/**
 * The renewer (DESIGN §7): renews the node certificate at a uniformly random
 * point between 50% and 80% of its lifetime (counted from its issue, not
 * from the backdated NotBefore), at once when the manager says so, and
 * retries failures with exponential backoff and full jitter (base 5 s, cap
 * 1 h or a tenth of the lifetime) for as long as the certificate is valid. Time and chance are
 * injected, so tests drive it with a fake clock and never sleep.
 */
import { backoffDelay } from '../core/backoff.js';
import { parseDuration } from '../core/duration.js';
import { MAX_RENEW_SPREAD_MS } from '../api/schemas.js';
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

/** What the manager says when polled. */
export interface RenewAdvice {
  renewNow: boolean;
  reason?: string;
  /** A busy manager's window for a renewal asked of every node (a duration: `1m40s`). */
  renewSpread?: string;
}

/** Reasons that reach every node at once (a shorter expiry, a root rotation): renewals are spread over a window. */
const CLUSTER_WIDE_REASONS: ReadonlySet<string> = new Set(['cert-expiry', 'ca-rotation']);

/** The retry backoff's ceiling never drops below this, however short the certificate (or unknown its issue). */
const MIN_BACKOFF_CAP_MS = 30_000;

/** In a session, polls start at least this far apart (an early answer is followed by a pause, never a tight loop). */
const SESSION_MIN_GAP_MS = 1_000;

/** Tuning; the defaults follow DESIGN §7. */
export interface RenewerOptions {
  /** Fraction of the lifetime where the window opens and closes. */
  windowStart: number;
  windowEnd: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** How often the manager is asked whether to renew now (jittered ±20%); in a session, how long each long poll waits. */
  pollMs: number;
  /**
   * A session (issue 20): each poll is a long poll that the manager answers
   * at once when the node must act, so polls follow each other on one
   * kept-alive connection instead of every pollMs.
   */
  session: boolean;
  /** Renewals the whole cluster is asked for at once start at a random point within this window (default: 2 polls, at most 60 s). */
  spreadMs?: number;
}

/** DESIGN §7 defaults; the 30 s poll keeps promotions and expiry changes prompt. */
export const DEFAULT_RENEWER_OPTIONS: RenewerOptions = {
  windowStart: 0.5,
  windowEnd: 0.8,
  backoffBaseMs: 5_000,
  backoffCapMs: 3_600_000,
  pollMs: 30_000,
  session: false,
};

/**
 * A spread renewal starts at a random moment of the first 90% of its
 * window: the rest is for the renewal itself (a key, a CSR, a request to a
 * busy manager), so the renewals also end within the window.
 */
const SPREAD_START_SHARE = 0.9;

/** When, within `windowMs`, a spread renewal starts: `float` is uniform in [0, 1). */
export function spreadDelayMs(windowMs: number, float: number): number {
  return Math.floor(windowMs * SPREAD_START_SHARE * float);
}

/**
 * The spread window of cluster-wide renewals: MUSTER_RENEW_SPREAD when set;
 * else two heartbeats (at most 60 s), or the longer window a busy manager
 * asks for (up to 5 minutes).
 */
export function spreadWindowMs(options: Pick<RenewerOptions, 'pollMs' | 'spreadMs'>, advice: Pick<RenewAdvice, 'renewSpread'> = {}): number {
  if (options.spreadMs !== undefined) return options.spreadMs;
  const own = Math.min(60_000, 2 * options.pollMs);
  let asked = 0;
  try {
    if (advice.renewSpread !== undefined) asked = Math.min(parseDuration(advice.renewSpread), MAX_RENEW_SPREAD_MS);
  } catch {
    asked = 0; // an unreadable window is the agent's own
  }
  return Math.max(own, asked);
}

/** What the renewer works with. */
export interface RenewerDeps {
  clock: Clock;
  random: Random;
  logger: Logger;
  /** The certificate held now. */
  current(): Validity;
  /** Makes a fresh key, gets it certified and stores the pair atomically; returns the new validity. */
  renew(reason: string): Promise<Validity>;
  /** Asks the manager whether to renew now (role change, shorter expiry, CA rotation); with `waitMs`, a long poll. */
  check(waitMs?: number): Promise<RenewAdvice>;
  /** Called once when the renewer stops for good: the certificate expired, or the node was removed. */
  onFatal?(reason: 'expired' | 'removed', message: string): void;
  options?: Partial<RenewerOptions>;
}

/** Poll failures that mean no manager could be asked (as opposed to a manager that answered no). */
const UNREACHABLE_CODES = new Set(['MANAGER_UNREACHABLE', 'STORE_UNAVAILABLE', 'NOT_A_MANAGER']);

/** Error codes after which retrying cannot help. */
const FATAL_CODES = new Set(['NODE_REMOVED', 'CERT_EXPIRED']);

/** The renewal loop of one node. */
export class Renewer {
  private readonly opts: RenewerOptions;
  private renewTimer: TimerHandle | undefined;
  private pollTimer: TimerHandle | undefined;
  /** A spread renewal waiting for its moment; stop() ends the wait. */
  private spreadWait: { timer: TimerHandle; done: () => void } | undefined;
  private running = false;
  private inFlight: Promise<void> | undefined;
  private failures = 0;
  /** Whether the last poll reached a manager; a change either way is logged once. */
  private reachable = true;
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

  /** Starts the schedule and the polling. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(this.pickRenewalTime(this.deps.current()));
    this.schedulePoll(this.opts.session ? 0 : undefined); // a session opens at once
  }

  /** Stops all timers; waits for a renewal under way. Idempotent. */
  async stop(): Promise<void> {
    this.running = false;
    this.renewTimer?.cancel();
    this.pollTimer?.cancel();
    this.renewTimer = undefined;
    this.pollTimer = undefined;
    this.spreadWait?.timer.cancel();
    this.spreadWait?.done();
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

  private schedule(at: number): void {
    this.renewTimer?.cancel();
    if (!this.running) return;
    this.nextRenewalAt = at;
    this.renewTimer = this.deps.clock.setTimer(Math.max(0, at - this.deps.clock.now()), () => {
      void this.renewNow('scheduled');
    });
  }

  /** Schedules the next poll (after `delayMs`, else a jittered poll interval); returns when it is due. */
  private schedulePoll(delayMs?: number): number {
    const delay = delayMs ?? Math.floor(this.opts.pollMs * (0.8 + 0.4 * this.deps.random.float()));
    if (!this.running) return this.deps.clock.now() + delay;
    this.pollTimer = this.deps.clock.setTimer(delay, () => {
      void this.poll();
    });
    return this.deps.clock.now() + delay;
  }

  /**
   * How long a session's long poll waits: the heartbeat, but no longer than
   * until the scheduled renewal (at least a second, the shortest wait), so
   * the renewal does not queue behind a parked poll on the node's one
   * connection.
   */
  private sessionWaitMs(): number {
    // Whole seconds, rounded down: the wait is sent in seconds, and must not end after the renewal.
    const untilRenewal = Math.floor(((this.nextRenewalAt ?? Infinity) - this.deps.clock.now()) / 1000) * 1000;
    return Math.max(SESSION_MIN_GAP_MS, Math.min(this.opts.pollMs, untilRenewal));
  }

  /** Waits `ms` of the clock (a spread renewal); stop() ends it early. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.spreadWait = undefined;
        resolve();
      };
      this.spreadWait = { timer: this.deps.clock.setTimer(ms, done), done };
    });
  }

  private async poll(): Promise<void> {
    // A renewal under way answers first (an expired certificate at start: the renewal says why it cannot go on).
    await this.inFlight?.catch(() => undefined);
    if (!this.running) return;
    const started = this.deps.clock.now();
    try {
      const advice = await this.deps.check(this.opts.session ? this.sessionWaitMs() : undefined);
      if (!this.reachable) {
        this.reachable = true;
        this.deps.logger.info({}, 'a manager answers again');
      }
      if (advice.renewNow && this.running) {
        const reason = advice.reason ?? 'manager request';
        // Told at once; a renewal the whole cluster was asked for waits for its random moment in the window.
        const windowMs = spreadWindowMs(this.opts, advice);
        const delay = CLUSTER_WIDE_REASONS.has(reason) ? spreadDelayMs(windowMs, this.deps.random.float()) : 0;
        this.deps.logger.info(
          { reason, inMs: delay },
          `the manager asks for a renewal now (${reason})${delay > 0 ? `; renewing in ${(delay / 1000).toFixed(1)}s (spread over ${windowMs / 1000}s)` : ''}`,
        );
        if (delay > 0) await this.pause(delay);
        if (this.running) await this.renewNow(reason);
      }
    } catch (error) {
      if (!this.running) return; // stopping: the poll was cut short on purpose
      if (isMusterError(error, 'CERT_EXPIRED') && this.deps.clock.now() >= this.deps.current().notAfter) {
        // Polls refuse an expired certificate, but a renewal may still take it within the grace (a node
        // cut off through its whole window, at 5-minute lifetimes): the renewal says whether it is too late.
        this.schedulePoll();
        void this.renewNow('expired');
        return;
      }
      if (isMusterError(error) && FATAL_CODES.has(error.code)) {
        this.fatal(error.code === 'NODE_REMOVED' ? 'removed' : 'expired', error.message);
        return;
      }
      const code = isMusterError(error) ? error.code : 'UNKNOWN';
      const next = this.schedulePoll();
      if (this.reachable && UNREACHABLE_CODES.has(code)) {
        // Once per change of state, not at every poll.
        this.reachable = false;
        this.deps.logger.warn(
          { code, nextAttempt: new Date(next).toISOString() },
          `cannot reach any manager (${error instanceof Error ? error.message : code}); next attempt at ${new Date(next).toISOString()}`,
        );
      } else {
        this.deps.logger.debug({ code }, 'manager poll failed');
      }
      return;
    }
    // A session polls again at once (the manager paces it); an early answer is followed by a short pause.
    this.schedulePoll(this.opts.session ? Math.max(0, SESSION_MIN_GAP_MS - (this.deps.clock.now() - started)) : undefined);
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

  private fatal(reason: 'expired' | 'removed', message: string): void {
    if (!this.running) return;
    this.deps.logger.error({ reason }, message);
    this.running = false;
    this.renewTimer?.cancel();
    this.pollTimer?.cancel();
    this.deps.onFatal?.(reason, message);
  }
}
