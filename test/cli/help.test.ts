/** Every command's --help text, snapshot-tested: a change to the CLI's surface shows up in review. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { buildProgram, topLevelProgram } from '../../src/cli/program.js';
import { systemClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { runInProcess } from '../helpers/cli.js';

const COMMANDS = [
  [],
  ['init'],
  ['up'],
  ['join'],
  ['run'],
  ['status'],
  ['join-token'],
  ['update'],
  ['node'],
  ['node', 'ls'],
  ['node', 'inspect'],
  ['node', 'rm'],
  ['node', 'promote'],
  ['node', 'demote'],
  ['ca'],
  ['ca', 'certs'],
  ['ca', 'create-api-certificate'],
  ['ca', 'revoke-api-certificate'],
  ['ca', 'renew-api-certificate'],
  ['ca', 'admin-anchor'],
  ['store'],
  ['store', 'migrate'],
  ['store', 'backup'],
  ['store', 'restore'],
  ['leave'],
  ['completion'],
];

describe('--help', () => {
  it.each(COMMANDS.map((c) => [c.join(' ') || '(none)', c]))('muster %s --help', async (_name, command) => {
    const run = runInProcess([...(command as string[]), '--help']);
    expect(await run.exit).toBe(0);
    expect(run.stdout()).toMatchSnapshot();
  });
});

describe('the top level without loading a command', () => {
  it("lists every command exactly as the commands themselves describe it (program.ts's table is the truth `muster --help` prints)", async () => {
    const ctx = { stdout: process.stdout, stderr: process.stderr, env: {}, uid: 1000, home: '/nonexistent', hostname: 'h', clock: systemClock, random: systemRandom, waitForStop: () => new Promise<never>(() => {}) };
    const full = await buildProgram(ctx, () => {});
    expect(topLevelProgram(ctx).helpInformation()).toBe(full.helpInformation());
  });

  it('muster --version and muster --help load no command module', () => {
    const loaded = spawnSync(process.execPath, ['--input-type=module', '-e', `
      const { runCli } = await import(${JSON.stringify(new URL('../../dist/cli/program.js', import.meta.url).href)});
      const out = { write: () => true };
      for (const argv of [['--version'], ['--help'], []]) await runCli({ stdout: out, stderr: out, env: {}, uid: 1000, home: '/', hostname: 'h' }, argv);
      const { createRequire } = await import('node:module');
      process.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));
    `], { encoding: 'utf8' });
    expect(loaded.status, loaded.stderr).toBe(0);
    const cjs = JSON.parse(loaded.stdout) as string[];
    // No server, store or HTTP client package came in through require (fastify, etcd3, level, undici, pino are the heavy ones).
    expect(cjs.filter((path) => /node_modules\/(fastify|etcd3|@grpc|level|classic-level|undici|pino)\//.test(path))).toEqual([]);
  });
});
