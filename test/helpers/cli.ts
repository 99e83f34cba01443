/** Running the CLI in-process (for speed) and as real child processes (for the real thing). */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { systemClock, type Clock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import type { CliContext } from '../../src/cli/context.js';
import { runCli } from '../../src/cli/program.js';
import { slow } from './slowdown.js';

/** The built CLI (npm test builds it first; see vitest.global-setup.ts). */
export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

class Capture extends Writable {
  text = '';
  readonly watchers = new Set<() => void>();
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text += chunk.toString('utf8');
    for (const watcher of this.watchers) watcher();
    done();
  }
}

/** An in-process CLI run. */
export interface InProcessRun {
  /** Resolves when a foreground command is serving. */
  ready: Promise<{ address?: string; nodeId: string; role: string }>;
  /** Resolves with the exit code. */
  exit: Promise<number>;
  /** Sends a stop signal to a foreground command and waits for the exit code. */
  stop(): Promise<number>;
  stdout(): string;
  stderr(): string;
  /** Asks the node to renew now, as SIGHUP does for a real process. */
  renew(): void;
  /** Resolves when stdout+stderr match `pattern` (checked as output arrives). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** Runs `muster ARGV` in this process with its own streams and env. */
export function runInProcess(argv: string[], options: { env?: Record<string, string | undefined>; clock?: Clock } = {}): InProcessRun {
  const stdout = new Capture();
  const stderr = new Capture();
  let stopNow: (signal: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => {
    stopNow = resolve;
  });
  let onReady: (info: { address?: string; nodeId: string; role: string }) => void = () => {};
  let renewHandler: (() => void) | undefined;
  const ready = new Promise<{ address?: string; nodeId: string; role: string }>((resolve) => {
    onReady = resolve;
  });
  const ctx: CliContext = {
    stdout,
    stderr,
    env: { MUSTER_LOG_LEVEL: 'info', ...options.env },
    uid: process.getuid?.() ?? 1000,
    home: '/nonexistent-home',
    hostname: hostname(),
    clock: options.clock ?? systemClock,
    random: systemRandom,
    waitForStop: () => stopped,
    onReady: (info) => onReady(info),
    onRenewRequest: (handler) => {
      renewHandler = handler;
      return () => {
        renewHandler = undefined;
      };
    },
  };
  const exit = runCli(ctx, argv);
  const failedEarly = exit.then((code) => {
    throw new Error(`muster ${argv.join(' ')} exited ${code} before it was ready:\n${stderr.text}`);
  });
  const readyOrFailed = Promise.race([ready, failedEarly]);
  readyOrFailed.catch(() => {}); // callers that await only `exit` must not see an unhandled rejection
  return {
    ready: readyOrFailed,
    exit,
    async stop() {
      stopNow('SIGTERM');
      return exit;
    },
    stdout: () => stdout.text,
    stderr: () => stderr.text,
    renew: () => renewHandler?.(),
    waitFor(pattern, timeoutMs = slow(20_000)) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const match = (stdout.text + stderr.text).match(pattern);
          if (match === null) return;
          clearTimeout(timer);
          stdout.watchers.delete(check);
          stderr.watchers.delete(check);
          resolve(match);
        };
        const timer = setTimeout(() => {
          stdout.watchers.delete(check);
          stderr.watchers.delete(check);
          reject(new Error(`timed out waiting for ${pattern} in:\n${stdout.text}\n${stderr.text}`));
        }, timeoutMs);
        stdout.watchers.add(check);
        stderr.watchers.add(check);
        check();
      });
    },
  };
}

/** A muster child process. */
export interface ChildRun {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when stdout+stderr match `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exit: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawns `node dist/cli/main.js ARGV`. */
export function spawnMuster(
  argv: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; prefix?: string[]; stdin?: string } = {},
): ChildRun {
  const [command, ...args] = [...(options.prefix ?? []), process.execPath, CLI, ...argv];
  const child = spawn(command!, args, {
    env: { ...process.env, NO_COLOR: '1', ...options.env },
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (options.stdin !== undefined) child.stdin?.end(options.stdin);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString('utf8');
    for (const l of listeners) l();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString('utf8');
    for (const l of listeners) l();
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitFor(pattern, timeoutMs = slow(20_000)) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const match = (out + err).match(pattern);
          if (match !== null) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(match);
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out waiting for ${pattern} in:\n${out}\n${err}`));
        }, timeoutMs);
        listeners.add(check);
        void exit.then(() => {
          if (!check()) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(new Error(`process exited before ${pattern}:\n${out}\n${err}`));
          }
        });
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exit;
    },
  };
}

/** Runs a short muster command to completion. */
const LIBFAKETIME = ['x86_64', 'aarch64'].map((arch) => `/usr/lib/${arch}-linux-gnu/faketime/libfaketime.so.1`).find((path) => existsSync(path));

/**
 * The environment that moves a whole process's clock by `offset` ('+2h',
 * '-90m'): libfaketime preloaded into the process itself. Not the `faketime`
 * wrapper, which forks and does not pass signals on, so stopping it would
 * leave the real process running.
 */
export function faked(offset: string): Record<string, string> {
  if (LIBFAKETIME === undefined) throw new Error('libfaketime is missing: run scripts/ensure-tools.sh');
  return { LD_PRELOAD: LIBFAKETIME, FAKETIME: offset };
}

export async function runMuster(
  argv: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; prefix?: string[]; stdin?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = spawnMuster(argv, options);
  const code = await run.exit;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/** The objects of a list command's `--format json`: one JSON object per line (NDJSON), none for an empty list. */
export function jsonLines<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T);
}
