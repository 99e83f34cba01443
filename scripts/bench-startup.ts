/**
 * npm run bench:startup — how long a muster command takes as a whole
 * process, next to a bare `node -e 0` timed in the same run, pair by pair
 * (A, B, A, B…: a comparison that holds while a shared machine's speed
 * drifts). Targets (issue 29): `muster --version` and `muster --help` within
 * 2× the bare node, `muster node ls` within 3× (plus the network: it asks a
 * manager on loopback). Prints each median and the median of the pairwise
 * ratios.
 *
 *   npm run bench:startup [-- --runs 15]
 */
import { spawnSync } from 'node:child_process';
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

console.log(`bench:startup — ${runtimeLine()}; ${runs} pairs per command (median of each, median of the pairwise ratios)`);
paired('muster --version', [CLI, '--version'], 2);
paired('muster --help', [CLI, '--help'], 2);
const manager = await startManagerProcess();
try {
  paired('muster node ls', [CLI, 'node', 'ls', '-q', '--data-dir', manager.dataDir], 3);
} finally {
  await manager.stop();
}
