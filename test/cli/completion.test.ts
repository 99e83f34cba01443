/**
 * `muster completion bash|zsh`: the scripts complete commands, subcommands,
 * flags and flag values, run by the real shells: bash through its completion
 * function and COMP_WORDS, zsh through compinit and a TAB typed into an
 * interactive shell (zpty). The tables come from the program, so every
 * command it has is reachable.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import { systemClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { runInProcess } from '../helpers/cli.js';
import { slow } from '../helpers/slowdown.js';

const ZSH_DRIVER = new URL('../helpers/zsh-complete.zsh', import.meta.url).pathname;

async function script(shell: string): Promise<string> {
  const run = runInProcess(['completion', shell]);
  expect(await run.exit).toBe(0);
  return run.stdout();
}

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

/** Every command of the program with its words after `muster`. */
function commands(): { path: string[]; command: Command }[] {
  const all: { path: string[]; command: Command }[] = [];
  const visit = (command: Command, path: string[]): void => {
    all.push({ path, command });
    for (const sub of command.commands) visit(sub, [...path, sub.name()]);
  };
  visit(program, []);
  return all;
}

describe('muster completion', () => {
  const work = mkdtempSync(join(tmpdir(), 'muster-completion-'));
  const files = join(work, 'cwd');
  let bashFile = '';
  let zshFile = '';

  beforeAll(async () => {
    bashFile = join(work, 'muster.bash');
    zshFile = join(work, '_muster');
    writeFileSync(bashFile, await script('bash'));
    writeFileSync(zshFile, await script('zsh'));
    // A folder to complete file and folder names in.
    mkdirSync(join(files, 'tokens'), { recursive: true });
    writeFileSync(join(files, 'token.txt'), 'x');
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** What bash's completion function offers for `words`, the last being the word under the cursor (as bash splits them: '--opt=v' is '--opt' '=' 'v'). */
  const bash = (...words: string[]): string[] => {
    const out = execFileSync(
      'bash',
      [
        '--norc',
        '--noprofile',
        '-c',
        'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _muster; printf "%s\\n" "${COMPREPLY[@]}"',
        'bash',
        bashFile,
        ...words,
      ],
      { cwd: files, encoding: 'utf8' },
    );
    return out.split('\n').filter((line) => line !== '');
  };

  it('bash: registers _muster for muster', () => {
    expect(execFileSync('bash', ['--norc', '--noprofile', '-c', 'source "$1"; complete -p muster', 'bash', bashFile], { encoding: 'utf8' }).trim()).toBe(
      'complete -F _muster muster',
    );
  });

  it('bash: completes `muster no` to node and `muster node ` to its subcommands', () => {
    expect(bash('muster', 'no')).toEqual(['node']);
    expect(bash('muster', 'node', '')).toEqual(['ls', 'inspect', 'rm', 'update', 'promote', 'demote', 'help']);
    expect(bash('muster', 'help', 'j')).toEqual(['join', 'join-token']);
    expect(bash('muster', 'completion', '')).toEqual(['bash', 'zsh']);
  });

  it("bash: completes a command's own flags, past the values of earlier flags", () => {
    expect(bash('muster', 'node', 'ls', '--f')).toEqual(['--filter', '--format']);
    expect(bash('muster', 'node', 'ls', '--filter', 'role=worker', '-q', '--fo')).toEqual(['--format']);
    expect(bash('muster', '--v')).toEqual(['--version']);
  });

  it("bash: completes a flag's value: its choices, file names or folder names", () => {
    expect(bash('muster', 'init', '--log-level', '')).toEqual(['debug', 'info', 'warn', 'error']);
    expect(bash('muster', 'init', '--log-level', '=', 'w')).toEqual(['warn']);
    expect(bash('muster', 'init', '--log-level', '=')).toEqual(['debug', 'info', 'warn', 'error']);
    expect(bash('muster', 'update', '--autolock', '')).toEqual(['true', 'false']);
    expect(bash('muster', 'join', '--token-file', 'tok').sort()).toEqual(['token.txt', 'tokens']);
    expect(bash('muster', 'init', '--data-dir', 'tok')).toEqual(['tokens']);
    // a value is not a command: `--listen-addr node` stays a value
    expect(bash('muster', 'init', '--listen-addr', 'no')).toEqual([]);
  });

  it('bash: reaches every command of the program (its subcommands, and --help among its flags)', () => {
    for (const { path, command } of commands()) {
      if (command.name() === 'help') continue;
      const subcommands = command.commands.map((c) => c.name());
      if (subcommands.length > 0) expect(bash('muster', ...path, ''), path.join(' ')).toEqual(expect.arrayContaining(subcommands));
      expect(bash('muster', ...path, '--'), path.join(' ')).toContain('--help');
    }
  });

  it('zsh: the script is valid zsh and registers _muster for muster under compinit', () => {
    execFileSync('zsh', ['-n', zshFile]);
    const registered = execFileSync(
      'zsh',
      ['-f', '-c', 'autoload -U compinit && compinit -u -D && source "$1" && print -r -- $_comps[muster]', 'zsh', zshFile],
      { encoding: 'utf8' },
    );
    expect(registered.trim()).toBe('_muster');
  });

  it('zsh: a TAB in an interactive zsh completes commands, subcommands, flags and their values', () => {
    const out = join(work, 'zsh.out');
    const lines = ['muster no', 'muster node ', 'muster node ls --f', 'muster init --log-level ', 'muster init --log-level=w', 'muster help j'];
    execFileSync('zsh', ['-f', ZSH_DRIVER, zshFile, out, ...lines], { cwd: files, timeout: slow(20_000) });
    const offered = readFileSync(out, 'utf8')
      .split(/^@@\d+\n/m)
      .slice(1)
      .map((block) => [...new Set(block.split('\n').filter((l) => l !== ''))]);
    expect(offered).toEqual([
      ['node'],
      ['ls', 'inspect', 'rm', 'update', 'promote', 'demote', 'help'],
      ['--filter', '--format'],
      ['debug', 'info', 'warn', 'error'],
      ['warn'],
      ['join', 'join-token'],
    ]);
  });

  it('refuses a shell it does not know, with the ones it does (usage error, exit 2)', async () => {
    const run = runInProcess(['completion', 'fish']);
    expect(await run.exit).toBe(2);
    expect(run.stderr()).toMatch(/error: .*'fish'.*bash, zsh/);
    expect(run.stdout()).toBe('');
  });
});
