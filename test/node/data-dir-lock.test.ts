/**
 * One daemon per data dir (data-dir-lock.ts), with real processes: a live
 * holder refuses the next, in another process or in this one; a holder
 * killed with SIGKILL, or a file naming a process that is not the one that
 * wrote it, is stale and replaced; release removes the file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lockDataDir as lockLayout } from '../../src/node/data-dir-lock.js';
import { dataDirLayout } from '../../src/config/paths.js';
import { scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir('muster-dirlock-');
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  scratch.cleanup();
});

/** A built module (vitest's global setup builds dist/), so a child process holds the lock with the real code. */
const built = (path: string): string => new URL(`../../dist/${path}`, import.meta.url).href;

/** A child process that takes the lock of `dir` and holds it until killed. */
async function holder(dir: string) {
  const script =
    "const [{ lockDataDir }, { dataDirLayout }] = await Promise.all([import(process.argv[1]), import(process.argv[2])]); await lockDataDir(dataDirLayout(process.argv[3])); console.log('held'); setInterval(() => {}, 60_000);";
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, built('node/data-dir-lock.js'), built('config/paths.js'), dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => (d.toString().includes('held') ? resolve() : undefined));
    child.on('exit', (code) => reject(new Error(`the holder exited ${code}`)));
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return {
    pid: child.pid!,
    kill: async (signal: NodeJS.Signals) => {
      child.kill(signal);
      return await exited;
    },
  };
}

const LOCK_FILE = 'muster.lock';
const lockDataDir = (dir: string) => lockLayout(dataDirLayout(dir));

const failure = async (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => 'taken',
    (error: unknown) => error,
  );

describe('the data dir lock', () => {
  it('refuses a second holder while the first lives, and is free again once a SIGKILLed holder is gone', async () => {
    const dir = scratch.path('killed');
    const first = await holder(dir);
    expect(await failure(lockDataDir(dir))).toMatchObject({
      code: 'DATA_DIR_LOCKED',
      message: `${dir} is in use by another muster process (pid ${first.pid})`,
      hint: expect.stringContaining(`kill ${first.pid}`),
    });
    await first.kill('SIGKILL');
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: first.pid }); // left behind: nobody removed it
    const second = await lockDataDir(dir);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
    await second.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    expect(existsSync(dir)).toBe(true); // the holder made it, not this lock
  });

  it('refuses a second daemon in the same process too, until the first releases', async () => {
    const dir = scratch.path('same-process');
    const first = await lockDataDir(dir);
    expect(await failure(lockDataDir(dir))).toMatchObject({ code: 'DATA_DIR_LOCKED' });
    await first.release();
    await first.release(); // idempotent
    await (await lockDataDir(dir)).release();
  });

  it('replaces a file that names a live pid with another start time (the pid was reused), or names no process at all', async () => {
    const dir = scratch.path('stale');
    mkdirSync(dir);
    for (const stale of [JSON.stringify({ pid: process.pid, start: '1' }), 'not json', JSON.stringify({ pid: 2 ** 22 + 7, start: '5' })]) {
      writeFileSync(join(dir, LOCK_FILE), stale);
      const lock = await lockDataDir(dir);
      expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
      await lock.release();
    }
  });

  it('makes a missing data dir 0700, and removes it again on release while it is empty', async () => {
    const dir = scratch.path('fresh/node');
    const lock = await lockDataDir(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, LOCK_FILE)).mode & 0o777).toBe(0o600);
    await lock.release();
    expect(existsSync(scratch.path('fresh'))).toBe(false);
  });
});
