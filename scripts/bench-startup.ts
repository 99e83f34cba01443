/**
 * npm run bench:startup — how long a muster command takes as a whole
 * process, next to a bare `node -e 0` timed in the same run, pair by pair
 * (A, B, A, B…: a comparison that holds while a shared machine's speed
 * drifts). Targets (issue 29): `muster --version` and `muster --help` within
 * 2× the bare node, `muster node ls` within 3× (plus the network: it asks a
 * manager on loopback). Prints each median and the median of the pairwise
 * ratios. And a manager's start: `muster run` on a data dir until it logs
 * "manager listening", next to a bare `node:https` server started with the
 * manager's key and certificate until it listens (no target: the figure an
 * operator waits for at every restart).
 *
 *   npm run bench:startup [-- --runs 15]
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runtimeLine, startManagerProcess } from './lib/load.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '15' } } });
const runs = Number(values.runs);
const CLI = 'dist/cli/main.js';

/** Wall-clock seconds of one run of `argv` (its output thrown away); fails loudly when the command fails. */
function timeOnce(argv: string[]): number {
  const start = process.hrtime.bigint();
  const run = spawnSync(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (run.status !== 0) throw new Error(`${argv.join(' ')} exited ${run.status}: ${run.stderr}`);
  return seconds;
}

const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

/** `runs` pairs of (command, bare node) after one warm-up each; the medians and the median ratio. */
function paired(name: string, argv: string[], target: number): void {
  timeOnce(argv);
  timeOnce(['-e', '0']);
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < runs; i++) {
    a.push(timeOnce(argv));
    b.push(timeOnce(['-e', '0']));
  }
  const ratio = median(a.map((x, i) => x / b[i]!));
  console.log(
    `${name.padEnd(22)} ${median(a).toFixed(3)} s   node -e 0 ${median(b).toFixed(3)} s   ratio ${ratio.toFixed(2)}×   target ≤ ${target}×   ${ratio <= target ? 'met' : 'NOT met'}`,
  );
}

/** Seconds from spawning `argv` until its output matches `ready`; then it is stopped (SIGTERM) and waited for. */
async function timeUntil(argv: string[], ready: RegExp): Promise<number> {
  const start = process.hrtime.bigint();
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'exit');
  let out = '';
  const seconds = await new Promise<number>((resolve, reject) => {
    const seen = (chunk: Buffer): void => {
      out += chunk.toString('utf8');
      if (ready.test(out)) resolve(Number(process.hrtime.bigint() - start) / 1e9);
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    void exited.then(([code]) => reject(new Error(`${argv.join(' ')} exited ${code} before it was ready:\n${out}`)));
  });
  child.kill('SIGTERM');
  await exited;
  return seconds;
}

/** A manager's start, pair by pair against the bare HTTPS server, on a data dir made here. */
async function managerStart(pairs: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'muster-bench-start-'));
  try {
    const dataDir = join(dir, 'm');
    await timeUntil([CLI, 'init', '--data-dir', dataDir, '--listen-addr', '127.0.0.1:0'], /muster join --token/);
    const certs = join(dataDir, 'certificates');
    const bare = [
      '-e',
      `const { readFileSync } = require('node:fs');
       require('node:https')
         .createServer({ key: readFileSync(${JSON.stringify(join(certs, 'node.key'))}), cert: readFileSync(${JSON.stringify(join(certs, 'node.crt'))}), requestCert: true, rejectUnauthorized: false }, (_q, r) => r.end('{}'))
         .listen(0, '127.0.0.1', () => console.log('listening'));`,
    ];
    const run = [CLI, 'run', '--data-dir', dataDir];
    await timeUntil(run, /manager listening on/);
    await timeUntil(bare, /listening/);
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < pairs; i++) {
      a.push(await timeUntil(run, /manager listening on/));
      b.push(await timeUntil(bare, /listening/));
    }
    const ratio = median(a.map((x, i) => x / b[i]!));
    console.log(
      `${'muster run (manager)'.padEnd(22)} ${median(a).toFixed(3)} s   bare node:https ${median(b).toFixed(3)} s   ratio ${ratio.toFixed(2)}×   (until it serves)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`bench:startup — ${runtimeLine()}; ${runs} pairs per command (median of each, median of the pairwise ratios)`);
paired('muster --version', [CLI, '--version'], 2);
paired('muster --help', [CLI, '--help'], 2);
const manager = await startManagerProcess();
try {
  paired('muster node ls', [CLI, 'node', 'ls', '-q', '--data-dir', manager.dataDir], 3);
} finally {
  await manager.stop();
}
await managerStart(Math.max(3, Math.ceil(runs / 2)));
