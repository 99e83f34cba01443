/**
 * The command line (DESIGN §5), on commander: builds the program from one
 * module per command (or command group) under commands/, runs one command
 * with the given context, and turns every failure into `error:`/`hint:`
 * lines and an exit code (0 success, 1 operational failure, 2 usage error).
 */
import { MUSTER_VERSION } from '../core/version.js';
import { Command, CommanderError } from 'commander';
import type { CliContext } from './context.js';
import { printError } from './output.js';
import type { Done } from './options.js';
import { readEnv } from './settings.js';

const VERSION = MUSTER_VERSION;

/** Registers one module's commands on the program. */
type Register = (program: Command, ctx: CliContext, done: Done) => void;

/**
 * The commands, in help order, each with what `muster --help` says of it
 * and the module that registers it, loaded only when the command runs: a
 * command loads what it needs, not the server (`muster --version` and
 * `--help` load no command at all). test/cli/help.test.ts checks that this
 * table says what the commands themselves say.
 */
const COMMANDS: readonly { name: string; term: string; description: string; load: () => Promise<Register> }[] = [
  {
    name: 'init',
    term: 'init [options]',
    description: 'found a cluster: a root CA, this node as its first manager, join tokens; then serve',
    load: async () => (await import('./commands/init.js')).registerInit,
  },
  {
    name: 'up',
    term: 'up [options]',
    description: 'init when the data dir is empty, else run it (what `npm start` does)',
    load: async () => (await import('./commands/init.js')).registerInit,
  },
  {
    name: 'join',
    term: 'join [options] [token] [manager-addr]',
    description: 'join a cluster with a join token, then keep this node’s certificate fresh',
    load: async () => (await import('./commands/join.js')).registerJoin,
  },
  {
    name: 'run',
    term: 'run [options]',
    description: 'run the node in a data dir; with a config file, found or join first when the data dir holds no node',
    load: async () => {
      const [init, join, run] = await Promise.all([import('./commands/init.js'), import('./commands/join.js'), import('./commands/run.js')]);
      return (program, ctx, done) => run.registerRun(program, ctx, done, { init: init.initCommand, join: join.joinCommand });
    },
  },
  {
    name: 'status',
    term: 'status [options]',
    description: 'this node, its cluster, its certificate and the managers it can reach (like docker info)',
    load: async () => (await import('./commands/status.js')).registerStatus,
  },
  {
    name: 'join-token',
    term: 'join-token [options] [role]',
    description: 'show or rotate the join token for a role; create, list and remove scoped tokens',
    load: async () => (await import('./commands/join-token.js')).registerJoinToken,
  },
  { name: 'update', term: 'update [options]', description: 'change cluster settings', load: async () => (await import('./commands/update.js')).registerUpdate },
  {
    name: 'unlock-key',
    term: 'unlock-key [options]',
    description: 'show the unlock key of an autolocked cluster, or replace it',
    load: async () => (await import('./commands/autolock.js')).registerAutolock,
  },
  {
    name: 'unlock',
    term: 'unlock [options]',
    description: 'unlock the manager on this host after a restart (the key from standard input, --unlock-key-file or $MUSTER_UNLOCK_KEY)',
    load: async () => (await import('./commands/autolock.js')).registerAutolock,
  },
  { name: 'node', term: 'node', description: 'list and manage nodes', load: async () => (await import('./commands/node.js')).registerNode },
  {
    name: 'cert',
    term: 'cert',
    description: "certificates for this node's other services (dockerd, nginx), kept renewed by the running node",
    load: async () => (await import('./commands/cert.js')).registerCert,
  },
  {
    name: 'ca',
    term: 'ca [options]',
    description: 'print the root CA; rotate it (--rotate); API-user certificates',
    load: async () => (await import('./commands/ca.js')).registerCa,
  },
  { name: 'store', term: 'store', description: 'where the cluster state lives', load: async () => (await import('./commands/store.js')).registerStore },
  {
    name: 'leave',
    term: 'leave [options]',
    description: 'leave the cluster and delete this node’s key and certificate',
    load: async () => (await import('./commands/leave.js')).registerLeave,
  },
  {
    name: 'completion',
    term: 'completion <shell>',
    description: 'print the bash or zsh completion script: source <(muster completion bash)',
    load: async () => (await import('./commands/completion.js')).registerCompletion,
  },
];

/** The program without its commands: name, version, output and error handling. */
function bareProgram(ctx: CliContext): Command {
  return (
    new Command('muster')
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
      .enablePositionalOptions()
  );
}

/**
 * The program's top level only, for `muster`, `muster --help` and
 * `muster --version`: every command listed from {@link COMMANDS}, none
 * loaded (running one of them is an error: the caller builds the whole
 * program for that).
 */
export function topLevelProgram(ctx: CliContext): Command {
  const program = bareProgram(ctx);
  for (const command of COMMANDS) program.command(command.name).description(command.description);
  const terms = new Map([...COMMANDS.map((c) => [c.name, c.term] as const), ['help', 'help [command]'] as const]);
  return program.configureHelp({ subcommandTerm: (command) => terms.get(command.name()) ?? command.name() });
}

/**
 * Builds the program; `done` receives the exit code of the chosen command.
 * With `argv`, only the module of the command it names is loaded (all of
 * them for `completion`, which prints every command, and when it names none).
 */
export async function buildProgram(ctx: CliContext, done: Done, argv?: readonly string[]): Promise<Command> {
  const program = bareProgram(ctx);
  const name = argv?.find((arg) => !arg.startsWith('-'));
  const named = COMMANDS.filter((c) => c.name === name);
  const chosen = named.length > 0 && name !== 'completion' ? named : COMMANDS;
  const registers = new Set(await Promise.all(chosen.map((c) => c.load())));
  for (const register of registers) register(program, ctx, done);
  return program;
}

/** True for an argv that asks for the top level only: nothing, --help or --version, and no command. */
function topLevelOnly(argv: readonly string[]): boolean {
  return argv.every((arg) => ['-h', '--help', '-v', '--version'].includes(arg));
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function runCli(ctx: CliContext, argv: readonly string[]): Promise<number> {
  let code: number | undefined;
  const program = topLevelOnly(argv)
    ? topLevelProgram(ctx)
    : await buildProgram(
        ctx,
        (c) => {
          code = c;
        },
        argv,
      );
  try {
    await program.parseAsync([...argv], { from: 'user' });
    if (code === undefined) {
      // `muster` alone, or a group like `muster node` without a subcommand: the top level's help, every command listed
      topLevelProgram(ctx).outputHelp();
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
