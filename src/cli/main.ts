#!/usr/bin/env node
/**
 * The muster executable, small on purpose. Loading the program takes 1.5 s
 * on an idle machine and seconds more under load; before that, this module
 * sets the umask, catches SIGHUP and hides a join token given on the command
 * line, and only then imports the program (process-context.ts). It imports
 * nothing at load time: an ESM module's static imports all load before its
 * first statement runs.
 */
import type { EarlyStart } from './process-context.js';

// Everything muster creates is its own: keys, LevelDB's files, folders (DESIGN §6), whatever umask it was started with.
process.umask(0o077);

/**
 * The arguments with every join token replaced (`--token T`, `--token=T`,
 * anything that starts like a token, such as join's positional one);
 * undefined when there is none. join.ts hides its token again once it has
 * parsed its arguments, including one that does not look like a token.
 */
function withoutTokens(args: readonly string[]): string[] | undefined {
  let hidden = false;
  const visible = args.map((arg, i) => {
    if (args[i - 1] === '--token' || /^swmtkn-/i.test(arg)) {
      hidden = true;
      return '<token hidden>';
    }
    if (arg.startsWith('--token=')) {
      hidden = true;
      return '--token=<token hidden>';
    }
    return arg;
  });
  return hidden ? visible : undefined;
}

// On Linux, process.title overwrites the argument area: /proc/PID/cmdline no longer shows the token.
// Before the SIGHUP handler, microseconds apart: a caught SIGHUP then shows the token is gone (test/cli/main.test.ts).
const visible = withoutTokens(process.argv.slice(2));
if (visible !== undefined) process.title = ['muster', ...visible].join(' ');

// SIGHUP means "renew now". Node's default would end the process, and systemd does not restart a
// process that SIGHUP ended: a `systemctl reload` in the first seconds would take the node down for
// good. One that arrives before the node can renew is kept for when it can; a client command never
// asks for it, so there it does nothing.
let renewHandler: (() => void) | undefined;
let renewPending = false;
process.on('SIGHUP', () => {
  if (renewHandler === undefined) renewPending = true;
  else renewHandler();
});

const early: EarlyStart = {
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
};

const { runProcess } = await import('./process-context.js');
await runProcess(early);
