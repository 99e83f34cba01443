import { describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { HOUR, flush, renewalHarness } from '../helpers/renewal.js';

describe('Renewer schedule', () => {
  it('lands every draw inside 50–80% of the lifetime (counted from the issue, not the backdated NotBefore)', () => {
    const { renewer, clock } = renewalHarness({ seed: 7 });
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
    const { renewer, clock } = renewalHarness({ seed: 9 });
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
    const { clock, renewer, renewals, held, start, stop } = renewalHarness({ seed: 1 });
    const before = held();
    start();
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
    await stop();
  });

  it('keeps renewing over many lifetimes', async () => {
    const { clock, renewals, start, stop } = renewalHarness({ seed: 3 });
    start();
    for (let i = 0; i < 10 * 60; i++) {
      clock.advance(60_000);
      await flush();
    }
    // ten hours of one-hour certificates renewed every 30–48 minutes
    expect(renewals.length).toBeGreaterThanOrEqual(12);
    expect(renewals.length).toBeLessThanOrEqual(20);
    await stop();
  });
});

describe('Renewer backoff', () => {
  it('grows exponentially with full jitter and is capped at an hour', () => {
    const { renewer } = renewalHarness({ seed: 11 });
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
    const { renewer, clock } = renewalHarness({ seed: 12 });
    renewer.pickRenewalTime({ notBefore: clock.now() - HOUR, notAfter: clock.now() + 5 * 60_000 });
    const delays = Array.from({ length: 400 }, () => renewer.backoffDelay(40));
    expect(Math.max(...delays)).toBeLessThanOrEqual(30_000);
    expect(Math.max(...delays)).toBeGreaterThan(25_000);
  });

  it('retries after failures until the manager is back, then renews', async () => {
    let down = true;
    const { clock, renewer, renewals, logger, held, start, stop } = renewalHarness({
      seed: 5,
      lifetime: 24 * HOUR,
      fail: () => (down ? new MusterError('MANAGER_UNREACHABLE') : undefined),
    });
    start();
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
    await stop();
  });

  it('keeps trying past expiry while the managers are down (they accept the expired key within the grace), without a tight loop', async () => {
    let down = true;
    const { clock, renewer, renewals, fatal, held, start, stop } = renewalHarness({
      seed: 2,
      lifetime: 24 * HOUR,
      fail: () => (down ? new MusterError('MANAGER_UNREACHABLE') : undefined),
    });
    const expiry = held().notAfter;
    start();
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
    await stop();
  });

  it('stops plainly when the managers say the certificate expired beyond the grace', async () => {
    const { clock, renewer, fatal, logger, start } = renewalHarness({
      seed: 3,
      fail: () => new MusterError('CERT_EXPIRED', 'the certificate expired on 2026-01-01T00:00:00.000Z, longer ago than the renewal grace'),
    });
    start();
    clock.advance(renewer.nextRenewalAt! - clock.now());
    await flush();
    expect(fatal).toEqual(['expired']);
    expect(logger.records.at(-1)?.message).toMatch(/longer ago than the renewal grace/);
    expect(clock.pending()).toBe(0);
  });

  it('stops when the manager says the node was removed', async () => {
    const { clock, renewer, fatal, start } = renewalHarness({ seed: 4, fail: () => new MusterError('NODE_REMOVED') });
    start();
    clock.advance(renewer.nextRenewalAt! - clock.now());
    await flush();
    expect(fatal).toEqual(['removed']);
  });
});

describe('Renewer renew-now triggers', () => {
  it('does not run two renewals at once', async () => {
    const { renewer, renewals, start, stop } = renewalHarness({ seed: 10 });
    start();
    await Promise.all([renewer.renewNow('a'), renewer.renewNow('b'), renewer.renewNow('c')]);
    expect(renewals).toHaveLength(1);
    await stop();
  });

  it('stop() cancels every timer and is idempotent', async () => {
    const { clock, start, stop } = renewalHarness({ seed: 12 });
    start();
    expect(clock.pending()).toBe(2);
    await stop();
    await stop();
    expect(clock.pending()).toBe(0);
  });
});
