/** A node's Renewer and Session, wired as NodeAgent wires them, on a fake clock against a scripted manager. */
import { Renewer, type Validity } from '../../src/agent/renewer.js';
import { Session, type RenewAdvice } from '../../src/agent/session.js';
import { FakeClock } from '../../src/core/clock.js';
import { recordingLogger } from '../../src/core/logger.js';
import { seededRandom, systemRandom } from '../../src/core/random.js';

/** An hour in milliseconds. */
export const HOUR = 3_600_000;

/** Lets pending promise callbacks run; no time passes on any clock. */
export const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

/** How the scripted manager answers: `fail` for renewals, `advice` for polls (either may throw). */
export interface RenewalHarnessOptions {
  lifetime?: number;
  fail?: () => Error | undefined;
  advice?: () => RenewAdvice;
  seed?: number;
  /** Long polls (issue 20) with a 30 s heartbeat, instead of a poll every 24–36 s. */
  session?: boolean;
}

/** A renewer and its session sharing one clock, one source of chance and one log; start() and stop() drive both. */
export function renewalHarness(opts: RenewalHarnessOptions = {}) {
  const clock = new FakeClock(Date.UTC(2026, 10, 22));
  const lifetime = opts.lifetime ?? HOUR;
  const random = opts.seed === undefined ? systemRandom : seededRandom(opts.seed);
  let held: Validity = { notBefore: clock.now(), notAfter: clock.now() + lifetime };
  const renewals: { at: number; reason: string }[] = [];
  const fatal: string[] = [];
  const polls: { at: number; waitMs: number | undefined }[] = [];
  const logger = recordingLogger();
  const renewer: Renewer = new Renewer({
    clock,
    random,
    logger,
    current: () => held,
    renew: async (reason) => {
      renewals.push({ at: clock.now(), reason });
      const error = opts.fail?.();
      if (error !== undefined) throw error;
      held = { notBefore: clock.now(), notAfter: clock.now() + lifetime };
      return held;
    },
    onFatal: (reason) => {
      session.stop();
      fatal.push(reason);
    },
  });
  const session: Session = new Session({
    clock,
    random,
    logger,
    renewer,
    current: () => held,
    check: async (waitMs) => {
      polls.push({ at: clock.now(), waitMs });
      return opts.advice?.() ?? { renewNow: false };
    },
    ...(opts.session === true ? { options: { session: true, pollMs: 30_000 } } : {}),
  });
  const start = (): void => {
    renewer.start();
    session.start();
  };
  const stop = async (): Promise<void> => {
    session.stop();
    await renewer.stop();
  };
  return { clock, renewer, session, start, stop, renewals, fatal, logger, polls, held: () => held };
}
