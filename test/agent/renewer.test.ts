import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/core/clock.js';
import { MusterError } from '../../src/core/errors.js';
import { recordingLogger } from '../../src/core/logger.js';
import { seededRandom, systemRandom } from '../../src/core/random.js';
import { Renewer, spreadWindowMs, type RenewAdvice, type Validity } from '../../src/agent/renewer.js';

const HOUR = 3_600_000;
/** Lets pending promise callbacks run; no time passes on any clock. */
const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

function harness(opts: { lifetime?: number; fail?: () => Error | undefined; advice?: () => RenewAdvice; seed?: number; session?: boolean } = {}) {
  const clock = new FakeClock(Date.UTC(2026, 10, 22));
  const lifetime = opts.lifetime ?? HOUR;
  let held: Validity = { notBefore: clock.now(), notAfter: clock.now() + lifetime };
  const renewals: { at: number; reason: string }[] = [];
  const fatal: string[] = [];
  const polls: { at: number; waitMs: number | undefined }[] = [];
  const logger = recordingLogger();
  const renewer = new Renewer({
    clock,
    random: opts.seed === undefined ? systemRandom : seededRandom(opts.seed),
    logger,
    current: () => held,
    renew: async (reason) => {
      renewals.push({ at: clock.now(), reason });
      const error = opts.fail?.();
      if (error !== undefined) throw error;
      held = { notBefore: clock.now(), notAfter: clock.now() + lifetime };
      return held;
    },
    check: async (waitMs) => {
      polls.push({ at: clock.now(), waitMs });
      return opts.advice?.() ?? { renewNow: false };
    },
    onFatal: (reason) => fatal.push(reason),
    ...(opts.session === true ? { options: { session: true, pollMs: 30_000 } } : {}),
  });
  return { clock, renewer, renewals, fatal, logger, polls, held: () => held };
}

describe('Renewer schedule', () => {
  it('lands every draw inside 50–80% of the lifetime (counted from the issue, not the backdated NotBefore)', () => {
    const { renewer, clock } = harness({ seed: 7 });
    const issued = clock.now();
    const validity = { notBefore: issued - HOUR, notAfter: issued + 90 * 24 * HOUR };
    const fractions = Array.from({ length: 5000 }, () => (renewer.pickRenewalTime(validity) - issued) / (90 * 24 * HOUR));
    expect(Math.min(...fractions)).toBeGreaterThanOrEqual(0.5);
    expect(Math.max(...fractions)).toBeLessThanOrEqual(0.8);
    // Spread over the window, not bunched: each tenth of it gets a share.
    const buckets = Array<number>(10).fill(0);
    for (const f of fractions) buckets[Math.min(9, Math.floor(((f - 0.5) / 0.3) * 10))]! += 1;
    for (const count of buckets) expect(count).toBeGreaterThan(350);
  });

  it('schedules a 5-minute certificate (backdated an hour) 2.5 to 4 minutes after its issue, also when the node starts later with it', () => {
    const { renewer, clock } = harness({ seed: 9 });
    const issued = clock.now();
    const validity = { notBefore: issued - HOUR, notAfter: issued + 5 * 60_000 };
    const draws = Array.from({ length: 2000 }, () => renewer.pickRenewalTime(validity) - issued);
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(150_000);
    expect(Math.max(...draws)).toBeLessThanOrEqual(240_000);
    // A node that restarts a minute later with the same certificate keeps the same window.
    clock.advance(60_000);
    const later = Array.from({ length: 2000 }, () => renewer.pickRenewalTime(validity) - issued);
    expect(Math.min(...later)).toBeGreaterThanOrEqual(150_000);
    expect(Math.max(...later)).toBeLessThanOrEqual(240_000);
  });

  it('renews when the clock reaches the picked moment, and not before', async () => {
    const { clock, renewer, renewals, held } = harness({ seed: 1 });
    const before = held();
    renewer.start();
    const due = renewer.nextRenewalAt!;
    expect(due).toBeGreaterThanOrEqual(before.notBefore + 0.5 * HOUR);
    expect(due).toBeLessThanOrEqual(before.notBefore + 0.8 * HOUR);
    clock.advance(due - clock.now() - 1);
    await flush();
    expect(renewals.filter((r) => r.reason === 'scheduled')).toHaveLength(0);
    clock.advance(1);
    await flush();
    expect(renewals.filter((r) => r.reason === 'scheduled')).toHaveLength(1);
    expect(held().notBefore).toBe(due);
    // and schedules the next one in the new certificate's window
    expect(renewer.nextRenewalAt! - held().notBefore).toBeGreaterThanOrEqual(0.5 * HOUR);
    await renewer.stop();
  });

  it('keeps renewing over many lifetimes', async () => {
    const { clock, renewer, renewals } = harness({ seed: 3 });
    renewer.start();
    for (let i = 0; i < 10 * 60; i++) {
      clock.advance(60_000);
      await flush();
    }
    // ten hours of one-hour certificates renewed every 30–48 minutes
    expect(renewals.length).toBeGreaterThanOrEqual(12);
    expect(renewals.length).toBeLessThanOrEqual(20);
    await renewer.stop();
  });
});

describe('Renewer backoff', () => {
  it('grows exponentially with full jitter and is capped at an hour', () => {
    const { renewer } = harness({ seed: 11 });
    const maxOf = (n: number): number => Math.max(...Array.from({ length: 400 }, () => renewer.backoffDelay(n)));
    expect(maxOf(1)).toBeLessThanOrEqual(5_000);
    expect(maxOf(2)).toBeLessThanOrEqual(10_000);
    expect(maxOf(2)).toBeGreaterThan(5_000);
    expect(maxOf(5)).toBeLessThanOrEqual(80_000);
    expect(maxOf(5)).toBeGreaterThan(40_000);
    expect(maxOf(40)).toBeLessThanOrEqual(HOUR);
    expect(maxOf(40)).toBeGreaterThan(0.9 * HOUR);
  });

  it('caps the backoff at a tenth of a short lifetime (30 s for 5-minute certificates), so a missed window is retried within the certificate', () => {
    const { renewer, clock } = harness({ seed: 12 });
    renewer.pickRenewalTime({ notBefore: clock.now() - HOUR, notAfter: clock.now() + 5 * 60_000 });
    const delays = Array.from({ length: 400 }, () => renewer.backoffDelay(40));
    expect(Math.max(...delays)).toBeLessThanOrEqual(30_000);
    expect(Math.max(...delays)).toBeGreaterThan(25_000);
  });

  it('retries after failures until the manager is back, then renews', async () => {
    let down = true;
    const { clock, renewer, renewals, logger, held } = harness({
      seed: 5,
      lifetime: 24 * HOUR,
      fail: () => (down ? new MusterError('MANAGER_UNREACHABLE') : undefined),
    });
    renewer.start();
    clock.advance(renewer.nextRenewalAt! - clock.now());
    await flush();
    expect(renewals).toHaveLength(1);
    for (let i = 0; i < 4; i++) {
      clock.advance(renewer.nextRenewalAt! - clock.now());
      await flush();
    }
    expect(renewals).toHaveLength(5);
    const retries = logger.records.filter((r) => r.message.startsWith('renewal failed; retrying in'));
    expect(retries).toHaveLength(5);
    expect(retries[0]?.message).toMatch(/because cannot reach the manager/);
    down = false;
    clock.advance(renewer.nextRenewalAt! - clock.now());
    await flush();
    expect(renewals).toHaveLength(6);
    expect(held().notBefore).toBe(clock.now());
    expect(logger.records.some((r) => r.message.startsWith('renewed until'))).toBe(true);
    await renewer.stop();
  });

  it('keeps trying past expiry while the managers are down (they accept the expired key within the grace), without a tight loop', async () => {
    let down = true;
    const { clock, renewer, renewals, fatal, held } = harness({
      seed: 2,
      lifetime: 24 * HOUR,
      fail: () => (down ? new MusterError('MANAGER_UNREACHABLE') : undefined),
    });
    const expiry = held().notAfter;
    renewer.start();
    for (let i = 0; i < 200 && clock.now() < expiry + 6 * HOUR; i++) {
      clock.advance(Math.max(1, (renewer.nextRenewalAt ?? clock.now()) - clock.now()));
      await flush();
    }
    expect(fatal).toEqual([]);
    const afterExpiry = renewals.filter((r) => r.at > expiry);
    expect(afterExpiry.length).toBeGreaterThan(0);
    expect(afterExpiry.length).toBeLessThan(60); // backed off, not spinning
    down = false;
    clock.advance(renewer.nextRenewalAt! - clock.now());
    await flush();
    expect(held().notAfter).toBeGreaterThan(clock.now());
    await renewer.stop();
  });

  it('a poll refused because the certificate expired hands over to a renewal (the grace may still admit it), and does not stop the node', async () => {
    let renewalsDown = true;
    let expiry = 0;
    const now = { at: (): number => 0 };
    const { clock, renewer, renewals, fatal, held } = harness({
      seed: 6,
      lifetime: 5 * 60_000,
      fail: () => (renewalsDown ? new MusterError('MANAGER_UNREACHABLE') : undefined),
      advice: () => {
        if (now.at() >= expiry) throw new MusterError('CERT_EXPIRED');
        return { renewNow: false };
      },
    });
    now.at = () => clock.now();
    expiry = held().notAfter;
    renewer.start();
    // Renewals cannot get through for the whole window and past the end; polls can, and are refused once it has expired.
    while (clock.now() < expiry + 60_000) {
      clock.advance(1_000);
      await flush();
    }
    expect(fatal).toEqual([]);
    expect(renewals.some((r) => r.reason === 'expired')).toBe(true);
    renewalsDown = false;
    for (let i = 0; i < 40 && held().notAfter <= clock.now(); i++) {
      clock.advance(1_000);
      await flush();
    }
    expect(held().notAfter).toBeGreaterThan(clock.now());
    expect(fatal).toEqual([]);
    await renewer.stop();
  });

  it('stops plainly when the managers say the certificate expired beyond the grace', async () => {
    const { clock, renewer, fatal, logger } = harness({
      seed: 3,
      fail: () => new MusterError('CERT_EXPIRED', 'the certificate expired on 2026-01-01T00:00:00.000Z, longer ago than the renewal grace'),
    });
    renewer.start();
    clock.advance(renewer.nextRenewalAt! - clock.now());
    await flush();
    expect(fatal).toEqual(['expired']);
    expect(logger.records.at(-1)?.message).toMatch(/longer ago than the renewal grace/);
    expect(clock.pending()).toBe(0);
  });

  it('stops when the manager says the node was removed', async () => {
    const { clock, renewer, fatal } = harness({ seed: 4, fail: () => new MusterError('NODE_REMOVED') });
    renewer.start();
    clock.advance(renewer.nextRenewalAt! - clock.now());
    await flush();
    expect(fatal).toEqual(['removed']);
  });
});

describe('Renewer renew-now triggers', () => {
  it('renews at once when a poll says so (promotion), then goes back to its schedule', async () => {
    let advice: RenewAdvice = { renewNow: false };
    const { clock, renewer, renewals } = harness({ seed: 9, lifetime: 24 * HOUR, advice: () => advice });
    const start = clock.now();
    renewer.start();
    clock.advance(40_000); // past one poll: nothing to do
    await flush();
    expect(renewals).toHaveLength(0);
    advice = { renewNow: true, reason: 'role-change' };
    clock.advance(40_000);
    await flush();
    expect(renewals).toHaveLength(1);
    expect(renewals[0]?.reason).toBe('role-change');
    // on the second poll (polls every 24–36 s), long before the 12 h window
    expect(renewals[0]!.at - start).toBeGreaterThan(40_000);
    expect(renewals[0]!.at - start).toBeLessThanOrEqual(80_000);
    advice = { renewNow: false };
    expect(renewer.nextRenewalAt! - renewals[0]!.at).toBeGreaterThanOrEqual(12 * HOUR);
    await renewer.stop();
  });

  it('does not run two renewals at once', async () => {
    const { renewer, renewals } = harness({ seed: 10 });
    renewer.start();
    await Promise.all([renewer.renewNow('a'), renewer.renewNow('b'), renewer.renewNow('c')]);
    expect(renewals).toHaveLength(1);
    await renewer.stop();
  });

  it('stop() cancels every timer and is idempotent', async () => {
    const { clock, renewer } = harness({ seed: 12 });
    renewer.start();
    expect(clock.pending()).toBe(2);
    await renewer.stop();
    await renewer.stop();
    expect(clock.pending()).toBe(0);
  });
});

describe('Renewer reachability', () => {
  it('warns once when no manager answers a poll, with the next attempt, and says once when one answers again', async () => {
    let down = true;
    const clock = new FakeClock(Date.UTC(2026, 10, 22));
    const logger = recordingLogger();
    const held: Validity = { notBefore: clock.now(), notAfter: clock.now() + 24 * HOUR };
    const renewer = new Renewer({
      clock,
      random: seededRandom(5),
      logger,
      current: () => held,
      renew: async () => held,
      check: async () => {
        if (down) throw new MusterError('MANAGER_UNREACHABLE', 'cannot reach the manager at 10.0.0.1:4377: ECONNREFUSED');
        return { renewNow: false };
      },
    });
    renewer.start();
    for (let i = 0; i < 5; i++) {
      clock.advance(40_000);
      await flush();
    }
    const warnings = logger.records.filter((r) => r.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toMatch(/^cannot reach any manager \(cannot reach the manager at 10\.0\.0\.1:4377: ECONNREFUSED\); next attempt at \d{4}-/);
    down = false;
    clock.advance(40_000);
    await flush();
    clock.advance(40_000);
    await flush();
    expect(logger.records.filter((r) => r.message === 'a manager answers again')).toHaveLength(1);
    await renewer.stop();
  });
});

describe('Renewer in a session (issue 20)', () => {
  it('opens at once, long-polls with the heartbeat as the wait, and polls again at least a second apart', async () => {
    const { clock, renewer, polls } = harness({ seed: 3, session: true, lifetime: 90 * 24 * HOUR });
    renewer.start();
    clock.advance(0);
    await flush();
    expect(polls).toEqual([{ at: clock.now(), waitMs: 30_000 }]);
    clock.advance(999); // the fake long poll answered at once: the next one waits for the gap
    await flush();
    expect(polls).toHaveLength(1);
    clock.advance(1);
    await flush();
    expect(polls).toHaveLength(2);
    await renewer.stop();
  });

  /** How long after being told (once, with `told`) the renewal of seed `seed` starts; the clock moves a second at a time up to `maxS`. */
  async function spreadDelay(seed: number, told: RenewAdvice, maxS: number): Promise<number> {
    let asked = false;
    const { clock, renewer, renewals } = harness({
      seed,
      session: true,
      lifetime: 90 * 24 * HOUR,
      advice: () => {
        if (asked) return { renewNow: false };
        asked = true;
        return told;
      },
    });
    renewer.start();
    const at = clock.now();
    clock.advance(0);
    await flush();
    for (let step = 0; step <= maxS && renewals.length === 0; step++) {
      clock.advance(1_000);
      await flush();
    }
    expect(renewals, `seed ${seed}`).toHaveLength(1);
    await renewer.stop();
    return renewals[0]!.at - at;
  }

  it('spreads a cluster-wide renewal over the window (two heartbeats, at most 60 s, or the longer one the manager asks); a role change renews at once', async () => {
    const delays: number[] = [];
    for (let seed = 1; seed <= 40; seed++) delays.push(await spreadDelay(seed, { renewNow: true, reason: 'cert-expiry' }, 60));
    expect(Math.max(...delays)).toBeLessThanOrEqual(54_000); // started in the first 90% of the window, so it ends within it
    expect(Math.min(...delays)).toBeLessThan(15_000);
    expect(Math.max(...delays)).toBeGreaterThan(45_000);

    // A busy manager's longer window is followed (up to 5 minutes); MUSTER_RENEW_SPREAD (spreadMs) wins over it.
    expect(spreadWindowMs({ pollMs: 30_000 }, { renewSpread: '1m40s' })).toBe(100_000);
    expect(spreadWindowMs({ pollMs: 30_000 }, { renewSpread: '10s' })).toBe(60_000);
    expect(spreadWindowMs({ pollMs: 30_000 }, { renewSpread: '2h' })).toBe(300_000);
    expect(spreadWindowMs({ pollMs: 30_000 }, { renewSpread: 'soon' })).toBe(60_000);
    expect(spreadWindowMs({ pollMs: 30_000, spreadMs: 5_000 }, { renewSpread: '1m40s' })).toBe(5_000);
    const waited: number[] = [];
    for (let seed = 1; seed <= 20; seed++) waited.push(await spreadDelay(seed, { renewNow: true, reason: 'ca-rotation', renewSpread: '4m' }, 240));
    expect(Math.max(...waited)).toBeLessThanOrEqual(216_000);
    expect(Math.max(...waited)).toBeGreaterThan(60_000);

    let asked = false;
    const { clock, renewer, renewals } = harness({
      seed: 9,
      session: true,
      lifetime: 90 * 24 * HOUR,
      advice: () => {
        if (asked) return { renewNow: false };
        asked = true;
        return { renewNow: true, reason: 'role-change' };
      },
    });
    renewer.start();
    clock.advance(0);
    await flush();
    expect(renewals).toEqual([{ at: clock.now(), reason: 'role-change' }]);
    await renewer.stop();
  });
});
