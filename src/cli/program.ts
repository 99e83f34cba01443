/**
 * The command line (DESIGN §5), on commander: builds the program from one
 * module per command (or command group) under commands/, runs one command
 * with the given context, and turns every failure into `error:`/`hint:`
 * lines and an exit code (0 success, 1 operational failure, 2 usage error).
 */
import { MUSTER_VERSION } from '../core/version.js';
import { Command, CommanderError } from 'commander';
import { registerAutolock } from './commands/autolock.js';
import { registerCa } from './commands/ca.js';
import { registerCompletion } from './commands/completion.js';
import { initCommand, registerInit } from './commands/init.js';
import { joinCommand, registerJoin } from './commands/join.js';
import { registerJoinToken } from './commands/join-token.js';
import { registerLeave } from './commands/leave.js';
import { registerNode } from './commands/node.js';
import { registerRun } from './commands/run.js';
import { registerStatus } from './commands/status.js';
import { registerStore } from './commands/store.js';
import { registerUpdate } from './commands/update.js';
import type { CliContext } from './context.js';
import { printError } from './output.js';
import type { Done } from './options.js';
import { readEnv } from './settings.js';

const VERSION = MUSTER_VERSION;

/** Builds the program; `done` receives the exit code of the chosen command. */
export function buildProgram(ctx: CliContext, done: Done): Command {
  const program = new Command('muster')
    .description('Swarm-style cluster identity: a root CA, join tokens, and mTLS node certificates that renew themselves.')
    .version(VERSION, '-v, --version')
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
      // commander's own refusals (unknown option, missing argument) in the same error:/hint: form as muster's.
      outputError: (text, write) => write(`${text.trimEnd()}\nhint: run the command with --help for its usage\n`),
    })
    .exitOverride()
    // Options belong to the command they follow: `join-token create … -q` is create's -q, not join-token's.
    .enablePositionalOptions();
  registerInit(program, ctx, done);
  registerJoin(program, ctx, done);
  registerRun(program, ctx, done, { init: initCommand, join: joinCommand });
  for (const register of [registerStatus, registerJoinToken, registerUpdate, registerAutolock, registerNode, registerCa, registerStore, registerLeave, registerCompletion]) {
    register(program, ctx, done);
  }
  return program;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function runCli(ctx: CliContext, argv: readonly string[]): Promise<number> {
  let code: number | undefined;
  const program = buildProgram(ctx, (c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    if (code === undefined) {
      // `muster` alone, or a group like `muster node` without a subcommand
      program.outputHelp();
      return argv.length === 0 ? 0 : 2;
    }
    return code;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return 0;
      return 2;
    }
    let colour = false;
    try {
      colour = readEnv(ctx).colour(ctx.stderr);
    } catch {
      colour = false;
    }
    return printError(ctx, error, colour);
  }
}
