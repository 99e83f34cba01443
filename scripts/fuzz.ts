/**
 * npm run fuzz [-- --runs 10000 --seed N] — every hostile-input property
 * with 10,000 cases (the test suite runs a few hundred). Prints cases and
 * time per target; exits non-zero on the first counterexample.
 */
import { parseArgs } from 'node:util';
import { makeTargets } from '../test/fuzz/targets.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10000' }, seed: { type: 'string' } } });
const runs = Number(values.runs);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
console.log(`fuzzing with ${runs} cases per target, seed ${seed}`);
const { targets, cleanup } = await makeTargets();
let failed = false;
for (const target of targets) {
  const start = performance.now();
  try {
    await target.run(runs, seed);
    console.log(`ok    ${target.name}: ${runs} cases in ${((performance.now() - start) / 1000).toFixed(1)} s`);
  } catch (error) {
    failed = true;
    console.log(`FAIL  ${target.name}: ${error instanceof Error ? error.message : String(error)}`);
    console.log(`      replay: npm run fuzz -- --runs ${runs} --seed ${seed}`);
  }
}
await cleanup();
process.exit(failed ? 1 : 0);
