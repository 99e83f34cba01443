import { afterAll, beforeAll, describe, it } from 'vitest';
import { PROPERTY_SEED, withSeed } from '../helpers/property.js';
import { makeTargets, type FuzzTarget } from './targets.js';

// The suite runs a few hundred cases per target from a fixed seed; `npm run fuzz` runs 10,000 from a new one.
let targets: FuzzTarget[] = [];
let cleanup: () => Promise<void> = async () => {};
beforeAll(async () => {
  ({ targets, cleanup } = await makeTargets());
});
afterAll(async () => cleanup());

describe('hostile input', () => {
  for (const name of [
    'POST /v1/join bodies',
    'renew CSRs (service, authenticated caller)',
    'CSR parser: random bytes and bit-flipped valid CSRs',
    'join token parser',
    'duration parser',
  ]) {
    it(withSeed(`${name}: only typed 4xx refusals`), async () => {
      const target = targets.find((t) => t.name === name);
      if (target === undefined) throw new Error(`no fuzz target ${name}`);
      await target.run(300, PROPERTY_SEED);
    });
  }
});
