#!/usr/bin/env node
/** The muster executable: fills a CliContext from the process and runs the CLI. */
import { hostname, homedir } from 'node:os';
import { systemClock } from '../core/clock.js';
import { systemRandom } from '../core/random.js';
import type { CliContext } from './context.js';
import { runCli } from './program.js';

const ctx: CliContext = {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  uid: typeof process.getuid === 'function' ? process.getuid() : 1000,
  home: homedir(),
  hostname: hostname(),
  clock: systemClock,
  random: systemRandom,
  waitForStop: () =>
    new Promise<string>((resolve) => {
      const stop = (signal: string): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve(signal);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    }),
  onRenewRequest: (handler) => {
    process.on('SIGHUP', handler);
    return () => process.off('SIGHUP', handler);
  },
};

const code = await runCli(ctx, process.argv.slice(2));
process.exitCode = code;
// Foreground commands have stopped their servers and timers by now; exit
// without waiting for stray keep-alive sockets.
setTimeout(() => process.exit(code), 50).unref();
