/**
 * The store is the truth (issue 13): concurrent changes through the real
 * HTTPS API all take effect, and a damaged store is refused, never re-created.
 */
import { readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { LevelStore } from '../../src/store/level-store.js';
import { codeOf } from '../helpers/codes.js';
import { runInProcess, runMuster } from '../helpers/cli.js';
import { scratchDir } from '../helpers/openssl.js';
import { readFileSync } from 'node:fs';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-truth-');
afterAll(() => scratch.cleanup());

/** Every file under `dir` with its size, mode and mtime. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      const info = statSync(path);
      out.push(`${path.slice(dir.length)} ${info.size} ${(info.mode & 0o777).toString(8)} ${info.mtimeMs}`);
      if (info.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return out;
}

describe('concurrent changes through the API', () => {
  it('two rotations at once (worker and manager, and two of the same role) both take effect, 100 times', { timeout: slow(120_000) }, async () => {
    const dir = scratch.path('rotations');
    const manager = runInProcess(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    const { address } = await manager.ready;
    const certs = join(dir, 'certificates');
    const client = new ApiClient({
      managers: [address!],
      tls: {
        rootPem: readFileSync(join(certs, 'root-ca.crt'), 'utf8'),
        certPem: readFileSync(join(certs, 'node.crt'), 'utf8'),
        keyPem: readFileSync(join(certs, 'node.key'), 'utf8'),
      },
    });
    // A token that works gets through even from an address the failure limiter blocks;
    // so TOKEN_REJECTED and RATE_LIMITED both prove a token is refused.
    const works = async (token: string): Promise<boolean> => {
      const code = await codeOf(client.call('joinPreflight', { body: { token } }));
      if (code !== undefined) expect(['TOKEN_REJECTED', 'RATE_LIMITED']).toContain(code);
      return code === undefined;
    };
    try {
      for (let round = 0; round < 100; round++) {
        const before = await client.call('joinTokens');
        const [worker, mgr] = await Promise.all([
          client.call('rotateToken', { params: { role: 'worker' } }),
          client.call('rotateToken', { params: { role: 'manager' } }),
        ]);
        const now = await client.call('joinTokens');
        expect(now.worker).toBe(worker.worker); // the printed worker token is the current one
        expect(now.manager).toBe(mgr.manager); // and so is the printed manager token
        expect(now.worker).not.toBe(before.worker);
        expect(now.manager).not.toBe(before.manager);
        expect(await works(before.worker)).toBe(false);
        expect(await works(now.worker)).toBe(true);
        const [a, b] = await Promise.all([
          client.call('rotateToken', { params: { role: 'worker' } }),
          client.call('rotateToken', { params: { role: 'worker' } }),
        ]);
        expect(a.worker).not.toBe(b.worker); // two rotations, not one swallowed by the other
        const last = (await client.call('joinTokens')).worker;
        expect([a.worker, b.worker]).toContain(last);
        for (const stale of [now.worker, a.worker, b.worker].filter((t) => t !== last)) expect(await works(stale)).toBe(false);
      }
    } finally {
      await client.close();
      await manager.stop();
    }
    // And after a restart the last tokens are still the ones in force.
    const restarted = runInProcess(['run', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    await restarted.ready;
    const shown = await runMuster(['join-token', '-q', 'worker', '--data-dir', dir]);
    expect(shown.stdout.trim()).toMatch(/^SWMTKN-1-/);
    await restarted.stop();
  });
});

describe('a damaged store', () => {
  it.each([
    ['CURRENT removed', (db: string) => rmSync(join(db, 'CURRENT'))],
    ['db/ removed', (db: string) => rmSync(db, { recursive: true })],
    [
      'a table truncated',
      async (db: string) => {
        await (await LevelStore.openDir(db, { create: false })).close(); // reopening writes the log into a table
        const table = join(db, readdirSync(db).find((f) => /\.(ldb|sst)$/.test(f))!);
        truncateSync(table, Math.floor(statSync(table).size / 2));
      },
    ],
  ])('%s: muster run exits 1 with STATE_CORRUPT, a hint that does not say init, and changes no file', async (_name, damage) => {
    const dir = scratch.path(`damaged-${Math.random().toString(36).slice(2)}`);
    const manager = runInProcess(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    await manager.ready;
    await manager.stop();
    await damage(join(dir, 'manager', 'db'));
    const before = snapshot(dir);
    const run = await runMuster(['run', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/"code":"STATE_CORRUPT"/);
    expect(run.stderr).toMatch(
      /error: the cluster store \S+ (has no CURRENT file|is missing|is damaged: the table \d+\.ldb is truncated \(\d+ of \d+ bytes\))/,
    );
    const hint = /hint: (.*)/.exec(run.stderr)?.[1] ?? '';
    expect(hint).toMatch(/backup/);
    expect(hint).not.toMatch(/init/);
    expect(snapshot(dir)).toEqual(before);
  });
});
