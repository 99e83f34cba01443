import { existsSync } from 'node:fs';
import { describe, expect, it, afterAll } from 'vitest';
import { joinCluster } from '../../src/agent/join.js';
import { FakeClock } from '../../src/core/clock.js';
import { MusterError } from '../../src/core/errors.js';
import { recordingLogger } from '../../src/core/logger.js';
import { systemRandom, type Random } from '../../src/core/random.js';
import { dataDirLayout } from '../../src/config/paths.js';
import { pino } from 'pino';
import { buildApp } from '../../src/manager/http/app.js';
import { scratchDir } from '../helpers/openssl.js';
import { foundTestCluster } from '../helpers/service.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-join-');
afterAll(() => scratch.cleanup());
/** Chance that always lands mid-range: full jitter then waits half of each ceiling. */
const half: Random = { bytes: (n) => systemRandom.bytes(n), float: () => 0.5 };
const TOKEN = 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx';

describe('joinCluster', () => {
  it('refuses a malformed token before contacting anyone', async () => {
    const lines: string[] = [];
    const error = await joinCluster({
      token: 'invalidtoken',
      managerAddr: '127.0.0.1:1',
      layout: dataDirLayout(scratch.path('a')),
      hostname: 'h',
      clock: new FakeClock(),
      random: systemRandom,
      logger: recordingLogger(),
      progress: (l) => lines.push(l),
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MusterError);
    expect((error as MusterError).code).toBe('TOKEN_INVALID');
    expect(lines).toEqual([]);
  });

  it('says when it will try an unreachable manager again, backs off with full jitter, then gives up plainly', async () => {
    const clock = new FakeClock(Date.UTC(2026, 10, 22, 12, 0, 0));
    const lines: string[] = [];
    const dir = scratch.path('b');
    let settled: unknown;
    const joining = joinCluster({
      token: TOKEN,
      managerAddr: '127.0.0.1:1',
      layout: dataDirLayout(dir),
      hostname: 'h',
      clock,
      random: half,
      logger: recordingLogger(),
      progress: (l) => lines.push(l),
      retry: { attempts: 3, delayMs: 1000 },
    }).then(
      () => (settled = 'joined'),
      (e: unknown) => (settled = e),
    );
    // A refused connection arrives whenever the loaded machine delivers it; the
    // backoff in between is on the fake clock, moved as soon as a wait is pending.
    const deadline = Date.now() + slow(20_000);
    while (settled === undefined && Date.now() < deadline) {
      await new Promise((resolve) => setImmediate(resolve));
      if (clock.pending() > 0) clock.advance(clock.nextDue()! - clock.now());
    }
    await joining;
    expect((settled as MusterError).code).toBe('MANAGER_UNREACHABLE');
    expect(lines[0]).toBe('contacting the manager at 127.0.0.1:1…');
    expect(lines[1]).toBe('cannot reach the manager at 127.0.0.1:1: ECONNREFUSED; attempt 1 of 3 failed, next attempt at 2026-11-22T12:00:00.500Z');
    expect(lines[2]).toBe('cannot reach the manager at 127.0.0.1:1: ECONNREFUSED; attempt 2 of 3 failed, next attempt at 2026-11-22T12:00:01.500Z');
    expect(lines).toHaveLength(3);
    expect(existsSync(dir)).toBe(false);
  });

  it('waits as long as a rate-limiting manager asks (Retry-After), says so, then reports the real refusal', async () => {
    const t = await foundTestCluster();
    const app = await buildApp({ services: t.services, tls: t.managerTls, logger: pino({ level: 'silent' }) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const managerAddr = `127.0.0.1:${(app.server.address() as { port: number }).port}`;
      // This cluster's root digest (the root pins) with a secret that is one character off.
      const real = t.settings.joinTokens().worker;
      const wrong = real.slice(0, -1) + (real.endsWith('a') ? 'b' : 'a');
      for (let i = 0; i < 10; i++) await t.caServer.preflight(wrong, '127.0.0.1').catch(() => undefined); // a NAT neighbour's ten bad guesses
      t.clock.advance(20_000); // the lockout has 40 s left
      const lines: string[] = [];
      const waits: number[] = [];
      let settled: unknown;
      const joining = joinCluster({
        token: wrong,
        managerAddr,
        layout: dataDirLayout(scratch.path('limited')),
        hostname: 'h',
        clock: t.clock,
        random: half,
        logger: recordingLogger(),
        progress: (l) => lines.push(l),
        retry: { attempts: 3, delayMs: 1000 },
      }).then(
        () => (settled = 'joined'),
        (e: unknown) => (settled = e),
      );
      const deadline = Date.now() + slow(20_000);
      while (settled === undefined && Date.now() < deadline) {
        await new Promise((resolve) => setImmediate(resolve));
        if (t.clock.pending() > 0) {
          waits.push(t.clock.nextDue()! - t.clock.now());
          t.clock.advance(t.clock.nextDue()! - t.clock.now());
        }
      }
      await joining;
      expect(waits).toEqual([40_000]); // the manager's Retry-After, not the 500 ms backoff
      expect(lines[1]).toBe(
        `the manager limits failed joins from this address and asks to wait until ${new Date(t.clock.now()).toISOString()}; attempt 1 of 3 failed`,
      );
      expect((settled as MusterError).code).toBe('TOKEN_REJECTED'); // then the token's own refusal, at once
      expect(lines).toHaveLength(2);

      // The right token from the same address gets through the lockout.
      for (let i = 0; i < 10; i++) await t.caServer.preflight(wrong, '127.0.0.1').catch(() => undefined);
      const joined = await joinCluster({
        token: real,
        managerAddr,
        layout: dataDirLayout(scratch.path('right')),
        hostname: 'h2',
        clock: t.clock,
        random: half,
        logger: recordingLogger(),
      });
      expect(joined.state.role).toBe('worker');
    } finally {
      await app.close();
      await t.cleanup();
    }
  });
});
