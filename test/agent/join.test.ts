import { existsSync } from 'node:fs';
import { describe, expect, it, afterAll } from 'vitest';
import { joinCluster } from '../../src/agent/join.js';
import { FakeClock } from '../../src/core/clock.js';
import { MusterError } from '../../src/core/errors.js';
import { recordingLogger } from '../../src/core/logger.js';
import { systemRandom, type Random } from '../../src/core/random.js';
import { dataDirLayout } from '../../src/config/paths.js';
import { scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir('muster-join-');
afterAll(() => scratch.cleanup());
/** Chance that always lands mid-range: full jitter then waits half of each ceiling. */
const half: Random = { bytes: (n) => systemRandom.bytes(n), float: () => 0.5 };
const TOKEN = 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx';

describe('joinCluster', () => {
  it('refuses a malformed token before contacting anyone', async () => {
    const lines: string[] = [];
    const error = await joinCluster({ token: 'invalidtoken', managerAddr: '127.0.0.1:1', layout: dataDirLayout(scratch.path('a')), hostname: 'h', clock: new FakeClock(), random: systemRandom, logger: recordingLogger(), progress: (l) => lines.push(l) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MusterError);
    expect((error as MusterError).code).toBe('TOKEN_INVALID');
    expect(lines).toEqual([]);
  });

  it('says when it will try an unreachable manager again, backs off with full jitter, then gives up plainly', async () => {
    const clock = new FakeClock(Date.UTC(2026, 10, 22, 12, 0, 0));
    const lines: string[] = [];
    const dir = scratch.path('b');
    let settled: unknown;
    const joining = joinCluster({ token: TOKEN, managerAddr: '127.0.0.1:1', layout: dataDirLayout(dir), hostname: 'h', clock, random: half, logger: recordingLogger(), progress: (l) => lines.push(l), retry: { attempts: 3, delayMs: 1000 } }).then(
      () => (settled = 'joined'),
      (e: unknown) => (settled = e),
    );
    // A refused connection arrives whenever the loaded machine delivers it; the
    // backoff in between is on the fake clock, moved as soon as a wait is pending.
    const deadline = Date.now() + 20_000;
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
});
