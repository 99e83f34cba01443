/** muster(1), made by scripts/man-page.ts from the program: it has every command and every flag, and groff reads it without a warning. */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import { systemClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { slow } from '../helpers/slowdown.js';

const ROOT = resolve(import.meta.dirname, '../..');

/** The whole program, every command loaded. */
const program = await buildProgram(
  {
    stdout: process.stdout,
    stderr: process.stderr,
    env: {},
    uid: 1000,
    home: '/nonexistent',
    hostname: hostname(),
    clock: systemClock,
    random: systemRandom,
    waitForStop: () => new Promise(() => {}),
  },
  () => {},
);

/** Every command of the program but commander's own `help`, with its full name ('muster node ls'). */
function commands(): { name: string; command: Command }[] {
  const all: { name: string; command: Command }[] = [];
  const visit = (command: Command, name: string): void => {
    for (const sub of command.commands) {
      all.push({ name: `${name} ${sub.name()}`, command: sub });
      visit(sub, `${name} ${sub.name()}`);
    }
  };
  visit(program, 'muster');
  return all;
}

describe('man page', () => {
  let page = '';
  let text = '';

  beforeAll(async () => {
    page = (await promisify(execFile)(process.execPath, [resolve(ROOT, 'node_modules/tsx/dist/cli.mjs'), 'scripts/man-page.ts'], { cwd: ROOT })).stdout;
    // As man shows it, on a wide terminal, without the overstrikes of bold and underline.
    text = execFileSync('groff', ['-man', '-Tutf8', '-P', '-c', '-rLL=200n'], {
      input: page,
      encoding: 'utf8',
      env: { ...process.env, LC_ALL: 'C.UTF-8' },
    }).replace(/.\x08/gu, '');
  }, slow(60_000));

  it('is read by groff without a warning', () => {
    const check = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z'], { input: page, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8' } });
    expect(check.status).toBe(0);
    expect(check.stderr).toBe('');
    expect(text).toMatch(/^MUSTER\(1\)/);
  });

  it('has a section for every command, with its arguments and every flag', () => {
    const all = commands();
    expect(all.map((c) => c.name)).toContain('muster node ls');
    for (const { name, command } of all) {
      if (command.name() === 'help') continue;
      const start = text.search(new RegExp(`^ {3}${name}( |$)`, 'm'));
      expect(start, name).toBeGreaterThan(0);
      const section = text.slice(start).split(/\n {3}muster /)[0]!;
      for (const option of command.options) {
        if (option.long === '--help') continue;
        expect(section, `${name} ${option.long}`).toContain(option.long!);
        if (option.short !== undefined) expect(section, `${name} ${option.short}`).toContain(option.short);
      }
      for (const argument of command.registeredArguments) expect(section, `${name} <${argument.name()}>`).toContain(argument.name());
    }
  });
});
