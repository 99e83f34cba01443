/**
 * The CLI run as this process, loaded by main.ts once it has caught SIGHUP:
 * fills a CliContext from the process and runs the CLI. SIGINT and SIGTERM
 * ask a foreground command to stop; close-with-grace gives it 10 seconds to
 * close its listeners, store and timers, and exits with the command's own
 * code. Nothing forces an earlier exit: a command that returns has released
 * everything, so the process ends by itself.
 */
import { hostname, homedir } from 'node:os';
import closeWithGrace from 'close-with-grace';
import { systemClock } from '../core/clock.js';
import { systemRandom } from '../core/random.js';
import type { CliContext } from './context.js';
import { runCli } from './program.js';

/** What main.ts set up before the program loaded. */
export interface EarlyStart {
  /** Registers the handler of "renew now" (SIGHUP); one that arrived before is delivered at once. Returns an unregister function. */
  onRenewRequest(handler: () => void): () => void;
}

/** Runs the CLI on this process's argv, streams and signals, and sets the exit code. */
export async function runProcess(early: EarlyStart): Promise<void> {
  let requestStop: (signal: string) => void = () => {};
  const stopRequested = new Promise<string>((resolve) => {
    requestStop = resolve;
  });

  // A reader that went away (`muster node ls | head`) ends the command quietly, as other CLIs end on
  // SIGPIPE: a daemon stops cleanly, and a client's failed write is no error (printError).
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    requestStop('EPIPE');
  });

  const ctx: CliContext = {
    stdout: process.stdout,
    stderr: process.stderr,
    // Only touched when a secret is read from it: a stdin stream that exists keeps the process alive.
    get stdin() {
      return process.stdin;
    },
    env: process.env,
    uid: typeof process.getuid === 'function' ? process.getuid() : 1000,
    home: homedir(),
    hostname: hostname(),
    clock: systemClock,
    random: systemRandom,
    waitForStop: () => stopRequested,
    onRenewRequest: (handler) => early.onRenewRequest(handler),
    // On Linux, process.title overwrites the argument area: /proc/PID/cmdline no longer shows what was typed.
    hideArguments: (visible) => {
      process.title = ['muster', ...visible].join(' ');
    },
  };

  const finished = runCli(ctx, process.argv.slice(2));
  // SIGHUP means "renew now" (main.ts), not "stop".
  const grace = closeWithGrace({ delay: 10_000, logger: false, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    if (err !== undefined) process.stderr.write(`error: ${err.message}\n`);
    requestStop(signal ?? 'error');
    const code = await finished;
    process.exit(err !== undefined ? 1 : code);
  });
  const code = await finished;
  grace.uninstall();
  process.exitCode = code;
}
