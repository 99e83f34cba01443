#!/usr/bin/env node
/**
 * The muster-ca executable: Flocker's offline CA tool, run in the current
 * folder. Kept light: it loads the tool's own code, muster's pki and core,
 * and nothing of the manager, the agent or the store.
 */
import { readFileSync } from 'node:fs';
import { systemClock } from '../core/clock.js';
import { systemRandom } from '../core/random.js';
import { runCaTool } from './program.js';

// The package's own version (dist/ca-tool/main.js and src/ca-tool/main.ts both sit two folders below package.json).
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

process.exitCode = await runCaTool(
  { stdout: process.stdout, stderr: process.stderr, cwd: process.cwd(), clock: systemClock, random: systemRandom, version },
  process.argv.slice(2),
);
