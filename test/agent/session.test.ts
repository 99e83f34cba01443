import { describe, expect, it } from 'vitest';
import { spreadWindowMs, type RenewAdvice } from '../../src/agent/session.js';
import { MusterError } from '../../src/core/errors.js';
import { HOUR, flush, renewalHarness } from '../helpers/renewal.js';

describe('Session renew-now triggers', () => {
  it('renews at once when a poll says so (promotion), then goes back to its schedule', async () => {
    let advice: RenewAdvice = { renewNow: false };
    const { clock, renewer, renewals, start, stop } = renewalHarness({ seed: 9, lifetime: 24 * HOUR, advice: () => advice });
    const startedAt = clock.now();
    start();
    clock.advance(40_000); // past one poll: nothing to do
    await flush();
    expect(renewals).toHaveLength(0);
    advice = { renewNow: true, reason: 'role-change' };
    clock.advance(40_000);
    await flush();
    expect(renewals).toHaveLength(1);
    expect(renewals[0]?.reason).toBe('role-change');
    // on the second poll (polls every 24–36 s), long before the 12 h window
    expect(renewals[0]!.at - startedAt).toBeGreaterThan(40_000);
    expect(renewals[0]!.at - startedAt).toBeLessThanOrEqual(80_000);
    advice = { renewNow: false };
    expect(renewer.nextRenewalAt! - renewals[0]!.at).toBeGreaterThanOrEqual(12 * HOUR);
    await stop();
  });

  it('a poll refused because the certificate expired hands over to a renewal (the grace may still admit it), and does not stop the node', async () => {
    let renewalsDown = true;
    let expiry = 0;
    const now = { at: (): number => 0 };
    const { clock, renewals, fatal, held, start, stop } = renewalHarness({
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
    start();
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
    await stop();
  });
});

describe('Session reachability', () => {
  it('warns once when no manager answers a poll, with the next attempt, and says once when one answers again', async () => {
    let down = true;
    const { clock, logger, start, stop } = renewalHarness({
      seed: 5,
      lifetime: 24 * HOUR,
      advice: () => {
        if (down) throw new MusterError('MANAGER_UNREACHABLE', 'cannot reach the manager at 10.0.0.1:4377: ECONNREFUSED');
        return { renewNow: false };
      },
    });
    start();
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
    await stop();
  });
});

describe('Session with long polls (issue 20)', () => {
  it('opens at once, long-polls with the heartbeat as the wait, and polls again at least a second apart', async () => {
    const { clock, polls, start, stop } = renewalHarness({ seed: 3, session: true, lifetime: 90 * 24 * HOUR });
    start();
    clock.advance(0);
    await flush();
    expect(polls).toEqual([{ at: clock.now(), waitMs: 30_000 }]);
    clock.advance(999); // the fake long poll answered at once: the next one waits for the gap
    await flush();
    expect(polls).toHaveLength(1);
    clock.advance(1);
    await flush();
    expect(polls).toHaveLength(2);
    await stop();
  });

  /** How long after being told (once, with `told`) the renewal of seed `seed` starts; the clock moves a second at a time up to `maxS`. */
  async function spreadDelay(seed: number, told: RenewAdvice, maxS: number): Promise<number> {
    let asked = false;
    const { clock, renewals, start, stop } = renewalHarness({
      seed,
      session: true,
      lifetime: 90 * 24 * HOUR,
      advice: () => {
        if (asked) return { renewNow: false };
        asked = true;
        return told;
      },
    });
    start();
    const at = clock.now();
    clock.advance(0);
    await flush();
    for (let step = 0; step <= maxS && renewals.length === 0; step++) {
      clock.advance(1_000);
      await flush();
    }
    expect(renewals, `seed ${seed}`).toHaveLength(1);
    await stop();
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
    const { clock, renewals, start, stop } = renewalHarness({
      seed: 9,
      session: true,
      lifetime: 90 * 24 * HOUR,
      advice: () => {
        if (asked) return { renewNow: false };
        asked = true;
        return { renewNow: true, reason: 'role-change' };
      },
    });
    start();
    clock.advance(0);
    await flush();
    expect(renewals).toEqual([{ at: clock.now(), reason: 'role-change' }]);
    await stop();
  });
});
