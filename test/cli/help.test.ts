/** Every command's --help text, snapshot-tested: a change to the CLI's surface shows up in review. */
import { spawnSync } from 'node:child_process';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram, topLevelProgram } from '../../src/cli/program.js';
import { systemClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { runInProcess } from '../helpers/cli.js';

const ctx = {
  stdout: process.stdout,
  stderr: process.stderr,
  env: {},
  uid: 1000,
  home: '/nonexistent',
  hostname: 'h',
  clock: systemClock,
  random: systemRandom,
  waitForStop: () => new Promise<never>(() => {}),
};

/** Every command and subcommand path of the whole program (program.ts's table, every module loaded): a command added later gets its snapshot too. */
function commandPaths(command: Command, prefix: string[] = []): string[][] {
  return command.commands.flatMap((sub) => [[...prefix, sub.name()], ...commandPaths(sub, [...prefix, sub.name()])]);
}

const COMMANDS: string[][] = [[], ...commandPaths(await buildProgram(ctx, () => {}))];

describe('--help', () => {
  it('covers every command of the program, those a table kept by hand missed included', () => {
    const names = COMMANDS.map((c) => c.join(' '));
    for (const name of ['unlock', 'unlock-key', 'join-token create', 'join-token ls', 'join-token rm', 'store backup', 'node promote'])
      expect(names).toContain(name);
    // Every top-level command `muster --help` lists has its own snapshot.
    for (const listed of topLevelProgram(ctx).commands.map((c) => c.name())) expect(names).toContain(listed);
  });

  it.each(COMMANDS.map((c) => [c.join(' ') || '(none)', c]))('muster %s --help', async (_name, command) => {
    const run = runInProcess([...(command as string[]), '--help']);
    expect(await run.exit).toBe(0);
    expect(run.stdout()).toMatchSnapshot();
  });
});

describe('the top level without loading a command', () => {
  it("lists every command exactly as the commands themselves describe it (program.ts's table is the truth `muster --help` prints)", async () => {
    const full = await buildProgram(ctx, () => {});
    expect(topLevelProgram(ctx).helpInformation()).toBe(full.helpInformation());
  });

  it('muster --version and muster --help load no command module', () => {
    const loaded = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
      const { runCli } = await import(${JSON.stringify(new URL('../../dist/cli/program.js', import.meta.url).href)});
      const out = { write: () => true };
      for (const argv of [['--version'], ['--help'], []]) await runCli({ stdout: out, stderr: out, env: {}, uid: 1000, home: '/', hostname: 'h' }, argv);
      const { createRequire } = await import('node:module');
      process.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));
    `,
      ],
      { encoding: 'utf8' },
    );
    expect(loaded.status, loaded.stderr).toBe(0);
    const cjs = JSON.parse(loaded.stdout) as string[];
    // No server, store or HTTP client package came in through require (fastify, etcd3, level, undici, pino are the heavy ones).
    expect(cjs.filter((path) => /node_modules\/(fastify|etcd3|@grpc|level|classic-level|undici|pino)\//.test(path))).toEqual([]);
  });
});
