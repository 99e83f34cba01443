#!/usr/bin/env node
/**
 * The muster executable: fills a CliContext from the process and runs the
 * CLI. SIGINT and SIGTERM ask a foreground command to stop; close-with-grace
 * gives it 10 seconds to close its listeners, store and timers, and exits
 * with the command's own code. Nothing forces an earlier exit: a command
 * that returns has released everything, so the process ends by itself.
 */
import { hostname, homedir } from 'node:os';
import closeWithGrace from 'close-with-grace';
import { systemClock } from '../core/clock.js';
import { systemRandom } from '../core/random.js';
import type { CliContext } from './context.js';
import { runCli } from './program.js';

// Everything muster creates is its own: keys, LevelDB's files, folders (DESIGN §6), whatever umask it was started with.
process.umask(0o077);

// SIGHUP means "renew now". It is caught from the first moment: Node's default would end the
// process, so a `systemctl reload` during start-up would kill the node. One that arrives before
// the node can renew is kept for when it can.
let renewHandler: (() => void) | undefined;
let renewPending = false;
process.on('SIGHUP', () => {
  if (renewHandler === undefined) renewPending = true;
  else renewHandler();
});

let requestStop: (signal: string) => void = () => {};
const stopRequested = new Promise<string>((resolve) => {
  requestStop = resolve;
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
  onRenewRequest: (handler) => {
    renewHandler = handler;
    if (renewPending) {
      renewPending = false;
      handler();
    }
    return () => {
      renewHandler = undefined;
    };
  },
  // On Linux, process.title overwrites the argument area: /proc/PID/cmdline no longer shows what was typed.
  hideArguments: (visible) => {
    process.title = ['muster', ...visible].join(' ');
  },
};

const finished = runCli(ctx, process.argv.slice(2));
// SIGHUP means "renew now" (onRenewRequest), not "stop".
const grace = closeWithGrace({ delay: 10_000, logger: false, skip: ['SIGHUP'] }, async ({ signal, err }) => {
  if (err !== undefined) process.stderr.write(`error: ${err.message}\n`);
  requestStop(signal ?? 'error');
  const code = await finished;
  process.exit(err !== undefined ? 1 : code);
});
const code = await finished;
grace.uninstall();
process.exitCode = code;
