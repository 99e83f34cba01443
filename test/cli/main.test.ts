/**
 * The executable's first moments (issue 26), with the real built CLI as
 * child processes: a join token given on the command line is out of
 * /proc/PID/cmdline before the program loads; SIGHUP in the first second
 * neither kills a node (it becomes a renewal once the node runs) nor a
 * client command; a reader of standard output that goes away ends a
 * command quietly.
 *
 * "After start" in the SIGHUP probes counts from when the child's
 * JavaScript starts: an `--import` module that only writes a line to
 * stderr marks it. Node's own native start-up before that (110–150 ms on
 * the 2-core test machines even with SCHED_FIFO, up to half a second under
 * their usual load) is not muster's to shorten, and no handler of any
 * program can exist during it.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, runMuster, spawnMuster, type ChildRun } from '../helpers/cli.js';
import { scratchDir } from '../helpers/openssl.js';
import { FAST_ENV, processScope } from '../helpers/processes.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-main-');
const { start } = processScope(FAST_ENV);
afterAll(() => scratch.cleanup());

/** Writes a line to stderr when the child's JavaScript starts, before node loads muster's entry module. */
const marker = scratch.write('program-start.mjs', "import { writeSync } from 'node:fs';\nwriteSync(2, 'muster-test: program starts\\n');\n");
const STARTS = /muster-test: program starts/;

let managerDir = '';
let address = '';
let token = '';

beforeAll(async () => {
  managerDir = scratch.path('manager');
  const manager = start(['init', '--data-dir', managerDir, '--listen-addr', '127.0.0.1:0']);
  [, token = '', address = ''] = await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (\S+:\d+)/);
}, slow(60_000));

/** Reads a /proc file of `pid`; undefined once the process is gone. */
function proc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** Whether `pid` has a handler for SIGHUP (signal 1: bit 0 of SigCgt). */
const catchesSighup = (status: string): boolean => (BigInt(`0x${/^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? '0'}`) & 1n) === 1n;

/**
 * Waits until `pid` catches SIGHUP (or is gone). On a busy machine the entry
 * module may run later than a fixed delay after the process's JavaScript
 * starts; the ordering test above proves the handler comes before the program
 * loads, so a probe sends its signal no earlier than the handler exists.
 */
async function untilCatching(pid: number): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    const status = proc(pid, 'status');
    if (status === undefined || catchesSighup(status) || performance.now() > deadline) return;
    await delay(5);
  }
}

describe('a join token on the command line', () => {
  it('is out of /proc/PID/cmdline as soon as the entry module runs, before the program loads', { timeout: slow(60_000) }, async () => {
    const t0 = performance.now();
    const run = start(['join', token, address, '--data-dir', scratch.path('argv-w')]);
    const pid = run.child.pid!;
    const secret = token.split('-')[3]!;
    const seen = {
      visible: undefined as number | undefined,
      hidden: undefined as number | undefined,
      sighup: undefined as number | undefined,
      loaded: undefined as number | undefined,
    };
    const wrong: string[] = [];
    // Read right after spawn: SigCgt first, then cmdline, then maps, so that what the first shows
    // (the entry module ran; the program loaded) already held when the next was read.
    while (performance.now() - t0 < 30_000 && seen.loaded === undefined) {
      const status = proc(pid, 'status');
      const cmdline = proc(pid, 'cmdline');
      const maps = proc(pid, 'maps');
      if (status === undefined || cmdline === undefined || maps === undefined) throw new Error(`the join exited early:\n${run.stderr()}`);
      const now = performance.now() - t0;
      const shows = cmdline.includes(secret);
      if (shows) seen.visible ??= now;
      else if (seen.visible !== undefined) seen.hidden ??= now;
      if (catchesSighup(status)) {
        seen.sighup ??= now;
        if (shows) wrong.push(`at ${now.toFixed(0)} ms SIGHUP is caught (the entry module ran) but the token is in the cmdline`);
      }
      if (maps.includes('classic-level.node')) {
        seen.loaded = now;
        if (shows) wrong.push(`at ${now.toFixed(0)} ms the program is loaded (LevelDB's native module is mapped) but the token is in the cmdline`);
      }
      await delay(1);
    }
    expect(wrong).toEqual([]);
    // The probe saw the arguments as typed (before node ran muster), then saw them go.
    expect(seen.visible).toBeDefined();
    expect(seen.hidden).toBeDefined();
    expect(seen.loaded).toBeDefined();
    expect(seen.hidden!).toBeLessThan(seen.loaded!);
    console.info(
      `token in /proc/PID/cmdline from ${seen.visible!.toFixed(0)} ms to ${seen.hidden!.toFixed(0)} ms after spawn; ` +
        `SIGHUP caught from ${seen.sighup!.toFixed(0)} ms; program loaded at ${seen.loaded!.toFixed(0)} ms`,
    );
    await run.waitFor(/This node joined cluster/);
    const cmdline = proc(pid, 'cmdline')!;
    expect(cmdline).not.toContain(secret);
    expect(cmdline).toMatch(/^muster join <token hidden> /);
    expect(await run.stop()).toBe(0);
  });
});

describe('SIGHUP in the first second', () => {
  const PROBES_MS = [100, 500, 1000];
  const worker = scratch.path('hup-run');

  beforeAll(async () => {
    const joined = start(['join', address, '--data-dir', worker], { MUSTER_TOKEN: token });
    await joined.waitFor(/This node joined cluster/);
    expect(await joined.stop()).toBe(0);
  }, slow(60_000));

  /** Starts `argv`, sends SIGHUP `afterMs` after its JavaScript starts, and checks it keeps running and renews once it runs. */
  async function probe(argv: string[], afterMs: number, env: Record<string, string> = {}): Promise<ChildRun> {
    const run = start(argv, { NODE_OPTIONS: `--import ${marker}`, ...env });
    await run.waitFor(STARTS);
    await delay(afterMs);
    await untilCatching(run.child.pid!);
    run.child.kill('SIGHUP');
    await run.waitFor(/"reason":"SIGHUP","msg":"renewal requested"/, slow(30_000));
    await run.waitFor(/"reason":"requested","msg":"renewed until/, slow(30_000));
    expect([run.child.exitCode, run.child.signalCode]).toEqual([null, null]);
    expect(run.stderr().match(/renewal requested/g)).toHaveLength(1);
    expect(await run.stop()).toBe(0);
    return run;
  }

  it.each(PROBES_MS)('a join sent SIGHUP %i ms after start keeps running and renews once it has joined', { timeout: slow(60_000) }, async (afterMs) => {
    await probe(['join', address, '--data-dir', scratch.path(`hup-join-${afterMs}`)], afterMs, { MUSTER_TOKEN: token });
  });

  it.each(PROBES_MS)('a run sent SIGHUP %i ms after start keeps running and renews once it runs', { timeout: slow(60_000) }, async (afterMs) => {
    await probe(['run', '--data-dir', worker], afterMs);
  });

  it('a client command sent SIGHUP as it starts ignores it', { timeout: slow(60_000) }, async () => {
    const run = spawnMuster(['node', 'ls', '-q', '--data-dir', managerDir], { env: { NODE_OPTIONS: `--import ${marker}` } });
    await run.waitFor(STARTS);
    await untilCatching(run.child.pid!);
    run.child.kill('SIGHUP');
    expect(await run.exit).toBe(0);
    expect(run.stdout()).toMatch(/^[0-9a-z]{25}\n/);
    expect(run.stderr()).toBe('muster-test: program starts\n');
  });
});

describe('a reader of standard output that goes away', () => {
  /** Runs `muster ARGS | head -n 0` in bash: head is gone before muster writes; resolves with muster's exit status and stderr. */
  async function intoClosedPipe(args: string[]): Promise<{ code: number; stderr: string }> {
    const errFile = scratch.path(`stderr-${args.join('-').replace(/\W+/g, '_')}`);
    const script = '"$0" "$1" "${@:3}" 2>"$2" | head -n 0; exit "${PIPESTATUS[0]}"';
    const code = await promisify(execFile)('bash', ['-c', script, process.execPath, CLI, errFile, ...args]).then(
      () => 0,
      (error: { code?: number }) => error.code ?? -1,
    );
    return { code, stderr: readFileSync(errFile, 'utf8') };
  }

  it('ends the command quietly with exit 0 (node ls | head, --help | head)', { timeout: slow(60_000) }, async () => {
    expect(await intoClosedPipe(['node', 'ls', '--data-dir', managerDir])).toEqual({ code: 0, stderr: '' });
    expect(await intoClosedPipe(['--help'])).toEqual({ code: 0, stderr: '' });
    // A real failure still fails.
    const missing = await intoClosedPipe(['node', 'ls', '--data-dir', scratch.path('nothing')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: no node in /);
    expect((await runMuster(['node', 'ls', '-q', '--data-dir', managerDir])).code).toBe(0);
  });
});

describe('what a client command loads (issue 29: node ls within 3× a bare node)', () => {
  // Lists every package module the child loads on stderr: ES modules through a load hook (it runs on the
  // hooks thread, hence writeSync on fd 2), CommonJS ones from the require cache as the process exits.
  const probe = scratch.write(
    'loaded-modules.mjs',
    [
      "import { createRequire, register } from 'node:module';",
      "import { writeSync } from 'node:fs';",
      "const hook = `import { writeSync } from 'node:fs'; export async function load(url, context, next) { writeSync(2, 'muster-test: loads ' + url + '\\\\n'); return next(url, context); }`;",
      "register('data:text/javascript,' + encodeURIComponent(hook));",
      "process.on('exit', () => { for (const file of Object.keys(createRequire(import.meta.url).cache)) writeSync(2, 'muster-test: loads ' + file + '\\n'); });",
    ].join('\n'),
  );

  it('node ls loads no TypeBox, undici, node-forge or fastify: they were most of its start-up', { timeout: 60_000 }, async () => {
    const run = await runMuster(['node', 'ls', '-q', '--data-dir', managerDir], { env: { NODE_OPTIONS: `--import ${probe}` } });
    expect(run.code, run.stderr).toBe(0);
    const packages = new Set([...run.stderr.matchAll(/^muster-test: loads .*\/node_modules\/((?:@[^/]+\/)?[^/]+)\//gm)].map((m) => m[1]!));
    // The probe sees what is loaded: commander always is.
    expect(packages).toContain('commander');
    expect([...packages].filter((name) => /^(typebox|@sinclair\/typebox|undici|node-forge|fastify|@fastify\/.*)$/.test(name))).toEqual([]);
  });
});
