/**
 * The node's session with the managers (issue 20; SwarmKit keeps it in
 * agent/session.go, apart from ca/renewer.go): asks a manager whether to
 * renew now (GET /v1/nodes/self), every poll interval or, in a session, by
 * long polls that follow each other on one kept-alive connection; says once
 * when no manager answers and once when one does again; and turns the
 * manager's advice into a renewal now or, for one the whole cluster was
 * asked for, at a random point of the spread window. The renewal itself is
 * the renewer's (renewer.ts), driven through RenewalSchedule.
 */
import { CLUSTER_WIDE_RENEW_REASONS } from '../api/routes.js';
import { MAX_RENEW_SPREAD_MS } from '../api/schemas.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { parseDuration } from '../core/duration.js';
import { isMusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import { FATAL_CODES, type Validity } from './renewer.js';

/** What the manager says when polled. */
export interface RenewAdvice {
  renewNow: boolean;
  reason?: string;
  /** A busy manager's window for a renewal asked of every node (a duration: `1m40s`). */
  renewSpread?: string;
}

/** In a session, polls start at least this far apart (an early answer is followed by a pause, never a tight loop). */
const SESSION_MIN_GAP_MS = 1_000;

/** Tuning; the defaults follow DESIGN §7. */
export interface SessionOptions {
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
export const DEFAULT_SESSION_OPTIONS: SessionOptions = {
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
export function spreadWindowMs(options: Pick<SessionOptions, 'pollMs' | 'spreadMs'>, advice: Pick<RenewAdvice, 'renewSpread'> = {}): number {
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

/** What a session drives: the renewal schedule (a Renewer). */
export interface RenewalSchedule {
  /** When the next scheduled renewal is due (ms since epoch): a long poll ends before it. */
  readonly nextRenewalAt: number | undefined;
  /** Renews now; a renewal already under way is not repeated. */
  renewNow(reason: string): Promise<void>;
  /** Resolves once the renewal under way, if any, has ended. */
  settled(): Promise<void>;
  /** Stops renewing for good (a poll learnt that the node was removed or its certificate expired beyond the grace). */
  fatal(reason: 'expired' | 'removed', message: string): void;
}

/** What the session works with. */
export interface SessionDeps {
  clock: Clock;
  random: Random;
  logger: Logger;
  /** The renewal schedule this session drives; whoever builds both stops the session when the schedule stops for good. */
  renewer: RenewalSchedule;
  /** The certificate held now. */
  current(): Validity;
  /** Asks the manager whether to renew now (role change, shorter expiry, CA rotation); with `waitMs`, a long poll that `signal` cuts short. */
  check(waitMs?: number, signal?: AbortSignal): Promise<RenewAdvice>;
  options?: Partial<SessionOptions>;
}

/** Poll failures that mean no manager could be asked (as opposed to a manager that answered no). */
const UNREACHABLE_CODES = new Set(['MANAGER_UNREACHABLE', 'STORE_UNAVAILABLE', 'NOT_A_MANAGER']);

/** The polling of one node. */
export class Session {
  private readonly opts: SessionOptions;
  private pollTimer: TimerHandle | undefined;
  /** A spread renewal waiting for its moment; stop() ends the wait. */
  private spreadWait: { timer: TimerHandle; done: () => void } | undefined;
  private running = false;
  /** Whether the last poll reached a manager; a change either way is logged once. */
  private reachable = true;
  /** Cuts the poll under way short (interrupt()), and when its wait ends. */
  private polling: { controller: AbortController; endsAt: number } | undefined;

  constructor(private readonly deps: SessionDeps) {
    this.opts = { ...DEFAULT_SESSION_OPTIONS, ...deps.options };
  }

  /** When the long poll under way ends on the clock (undefined between polls). */
  get pollEndsAt(): number | undefined {
    return this.polling?.endsAt;
  }

  /** Starts polling; start the renewer first (its schedule bounds a long poll, and it draws its moment first). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedulePoll(this.opts.session ? 0 : undefined); // a session opens at once
  }

  /** Stops polling and ends a spread wait; a poll under way ends when its client is closed. Idempotent. */
  stop(): void {
    this.running = false;
    this.pollTimer?.cancel();
    this.pollTimer = undefined;
    this.spreadWait?.timer.cancel();
    this.spreadWait?.done();
  }

  /**
   * Cuts a parked long poll short so another request goes over the node's
   * one connection now (a renewal asked for out of schedule, a service
   * certificate) instead of queueing behind it for up to a heartbeat. The
   * poll's connection closes with it (the next request makes a new one); the
   * session polls again after the pause between polls, behind that request.
   * A poll that ends within that pause anyway (the one before a scheduled
   * renewal) is left to end: the request waits for it instead of costing a
   * new handshake.
   */
  interrupt(): void {
    if (this.polling === undefined || this.polling.endsAt - this.deps.clock.now() <= SESSION_MIN_GAP_MS) return;
    this.polling.controller.abort();
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
    const untilRenewal = Math.floor(((this.deps.renewer.nextRenewalAt ?? Infinity) - this.deps.clock.now()) / 1000) * 1000;
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
    await this.deps.renewer.settled();
    if (!this.running) return;
    const started = this.deps.clock.now();
    const waitMs = this.opts.session ? this.sessionWaitMs() : undefined;
    const polling = new AbortController();
    this.polling = { controller: polling, endsAt: started + (waitMs ?? 0) };
    try {
      const advice = await this.deps.check(waitMs, polling.signal);
      this.polling = undefined;
      if (!this.reachable) {
        this.reachable = true;
        this.deps.logger.info({}, 'a manager answers again');
      }
      if (advice.renewNow && this.running) {
        const reason = advice.reason ?? 'manager request';
        // Told at once; a renewal the whole cluster was asked for waits for its random moment in the window.
        const windowMs = spreadWindowMs(this.opts, advice);
        const delay = CLUSTER_WIDE_RENEW_REASONS.has(reason) ? spreadDelayMs(windowMs, this.deps.random.float()) : 0;
        this.deps.logger.info(
          { reason, inMs: delay },
          `the manager asks for a renewal now (${reason})${delay > 0 ? `; renewing in ${(delay / 1000).toFixed(1)}s (spread over ${windowMs / 1000}s)` : ''}`,
        );
        if (delay > 0) await this.pause(delay);
        if (this.running) await this.deps.renewer.renewNow(reason);
      }
    } catch (error) {
      this.polling = undefined;
      if (!this.running) return; // stopping: the poll was cut short on purpose
      if (polling.signal.aborted) {
        // Cut short for another request (interrupt()): not a failure; polling goes on once it has gone through.
        this.schedulePoll(SESSION_MIN_GAP_MS);
        return;
      }
      if (isMusterError(error, 'CERT_EXPIRED') && this.deps.clock.now() >= this.deps.current().notAfter) {
        // Polls refuse an expired certificate, but a renewal may still take it within the grace (a node
        // cut off through its whole window, at 5-minute lifetimes): the renewal says whether it is too late.
        this.schedulePoll();
        void this.deps.renewer.renewNow('expired');
        return;
      }
      if (isMusterError(error) && FATAL_CODES.has(error.code)) {
        this.deps.renewer.fatal(error.code === 'NODE_REMOVED' ? 'removed' : 'expired', error.message);
        this.stop();
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
}
