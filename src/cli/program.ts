/**
 * The command line (DESIGN §5), on commander: parses argv, runs one command
 * with the given context, and turns every failure into `error:`/`hint:`
 * lines and an exit code (0 success, 1 operational failure, 2 usage error).
 */
import { Command, CommanderError, Option } from 'commander';
import { MusterError } from '../core/errors.js';
import type { CliContext } from './context.js';
import {
  createApiCertificateCommand,
  joinTokenCommand,
  leaveCommand,
  nodeInspectCommand,
  nodeListCommand,
  nodeRemoveCommand,
  nodeRoleCommand,
  revokeApiCertificateCommand,
  updateCommand,
} from './admin.js';
import { initCommand, joinCommand, runCommand, upCommand, type InitFlags } from './daemon.js';
import { printError } from './output.js';
import type { ConnectFlags } from './connect.js';

const VERSION = '0.1.0';

function withConnectFlags(command: Command): Command {
  return command
    .option('--data-dir <dir>', 'the local node data dir (default: $MUSTER_DATA_DIR, /var/lib/muster as root, ~/.local/state/muster otherwise)')
    .option('-H, --host <host:port>', 'talk to this manager (default: $MUSTER_HOST, else the manager in the data dir)')
    .option('--tls-cert <file>', 'client certificate for --host (default: $MUSTER_CERT_PATH/cert.pem)')
    .option('--tls-key <file>', 'client key for --host (default: $MUSTER_CERT_PATH/key.pem)')
    .option('--tls-ca <file>', 'root CA to verify the manager (default: $MUSTER_CERT_PATH/ca.pem)');
}

function connectFlags(options: Record<string, unknown>): ConnectFlags {
  const pick = (k: string): string | undefined => (typeof options[k] === 'string' ? (options[k] as string) : undefined);
  const flags: ConnectFlags = {};
  const dataDir = pick('dataDir');
  const host = pick('host');
  const tlsCert = pick('tlsCert');
  const tlsKey = pick('tlsKey');
  const tlsCa = pick('tlsCa');
  if (dataDir !== undefined) flags.dataDir = dataDir;
  if (host !== undefined) flags.host = host;
  if (tlsCert !== undefined) flags.tlsCert = tlsCert;
  if (tlsKey !== undefined) flags.tlsKey = tlsKey;
  if (tlsCa !== undefined) flags.tlsCa = tlsCa;
  return flags;
}

/** Builds the program; `run` receives the exit code of the chosen command. */
export function buildProgram(ctx: CliContext, done: (code: number) => void): Command {
  const program = new Command('muster')
    .description('Swarm-style cluster identity: a root CA, join tokens, and mTLS node certificates that renew themselves.')
    .version(VERSION, '-v, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => ctx.stdout.write(s), writeErr: (s) => ctx.stderr.write(s) })
    .exitOverride();
  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      done(await fn(...args));
    };

  const collect = (value: string, previous: string[]): string[] => [...previous, value];
  const initOptions = (command: Command): Command =>
    command
      .option('--data-dir <dir>', 'where the cluster state goes')
      .option('--listen-addr <host:port>', 'address the API listens on (default: $MUSTER_LISTEN_ADDR, else 0.0.0.0:4377)')
      .option('--advertise-addr <host[:port]>', 'address nodes use to reach this manager (default: the listen host, or 127.0.0.1 when listening on all interfaces)')
      .option('--cert-expiry <duration>', "lifetime of node certificates, e.g. '2160h', '90d' (minimum 1h)", '2160h')
      .option('--ca-cert <file>', 'bring your own root CA certificate (with --ca-key)')
      .option('--ca-key <file>', 'the private key of --ca-cert')
      .option('--external-ca <spec>', 'sign with an external CA instead of a local key (repeatable, tried in order): protocol=cfssl,url=URL[,cacert=FILE][,authkey=HEX]', collect, [])
      .addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']));

  initOptions(program.command('init').description('found a cluster: a root CA, this node as its first manager, join tokens; then serve')).action(
    act((options: InitFlags) => initCommand(ctx, options)),
  );

  initOptions(program.command('up').description('init when the data dir is empty, else run it (what `npm start` does)')).action(
    act((options: InitFlags) => upCommand(ctx, options)),
  );

  program
    .command('join')
    .description('join a cluster with a join token, then keep this node’s certificate fresh')
    .argument('[token]', 'the join token (or pass --token)')
    .argument('[manager-addr]', 'a manager address, host:port')
    .option('--token <token>', 'the join token')
    .option('--data-dir <dir>', 'where this node keeps its key and certificate')
    .option('--label <key=value...>', 'node labels')
    .addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']))
    .action(
      act(async (first: string | undefined, second: string | undefined, options: { token?: string; dataDir?: string; label?: string[]; logLevel?: string }) => {
        const positional = [first, second].filter((x): x is string => x !== undefined);
        const token = options.token ?? (positional.length === 2 ? positional[0] : undefined);
        const managerAddr = options.token !== undefined ? positional[0] : positional[1];
        if (token === undefined || managerAddr === undefined || positional.length > (options.token !== undefined ? 1 : 2)) {
          throw new MusterError('USAGE', 'join needs a token and a manager address', { hint: 'muster join --token SWMTKN-1-… HOST:PORT' });
        }
        return joinCommand(ctx, { token, managerAddr, ...options });
      }),
    );

  program
    .command('run')
    .description('restart the node (manager or worker) in a data dir')
    .option('--data-dir <dir>', 'the node data dir')
    .option('--listen-addr <host:port>', 'override the manager listen address (default: $MUSTER_LISTEN_ADDR, else as at init)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']))
    .action(act((options: { dataDir?: string; listenAddr?: string; logLevel?: string }) => runCommand(ctx, options)));

  withConnectFlags(
    program
      .command('join-token')
      .description('show or rotate the join token for a role')
      .argument('<role>', 'worker or manager')
      .option('-q, --quiet', 'print the token only')
      .option('--rotate', 'replace the token; the old one is refused from then on'),
  ).action(act((role: string, options: Record<string, unknown>) => joinTokenCommand(ctx, role, { ...connectFlags(options), quiet: options.quiet === true, rotate: options.rotate === true })));

  withConnectFlags(
    program
      .command('update')
      .description('change cluster settings')
      .option('--cert-expiry <duration>', "lifetime of node certificates, e.g. '720h', '90d' (minimum 1h)")
      .option('--external-ca <spec>', 'replace the external CA list (repeatable): protocol=cfssl,url=URL[,cacert=FILE][,authkey=HEX]', collect, []),
  ).action(
    act((options: Record<string, unknown>) =>
      updateCommand(ctx, { ...connectFlags(options), ...(typeof options.certExpiry === 'string' ? { certExpiry: options.certExpiry } : {}), externalCa: options.externalCa as string[] }),
    ),
  );

  const node = program.command('node').description('list and manage nodes');
  withConnectFlags(node.command('ls').description('list nodes').option('--format <format>', 'table or json', 'table')).action(
    act((options: Record<string, unknown>) => nodeListCommand(ctx, { ...connectFlags(options), format: String(options.format) })),
  );
  withConnectFlags(node.command('inspect').description('show one node as JSON').argument('<id>', 'node ID')).action(
    act((id: string, options: Record<string, unknown>) => nodeInspectCommand(ctx, id, connectFlags(options))),
  );
  withConnectFlags(node.command('rm').description('remove a node; its certificate is refused from then on').argument('<id>', 'node ID').option('-f, --force', 'remove a node that is still active')).action(
    act((id: string, options: Record<string, unknown>) => nodeRemoveCommand(ctx, id, { ...connectFlags(options), force: options.force === true })),
  );
  withConnectFlags(node.command('promote').description('make a worker a manager').argument('<id>', 'node ID')).action(
    act((id: string, options: Record<string, unknown>) => nodeRoleCommand(ctx, id, 'manager', connectFlags(options))),
  );
  withConnectFlags(node.command('demote').description('make a manager a worker').argument('<id>', 'node ID')).action(
    act((id: string, options: Record<string, unknown>) => nodeRoleCommand(ctx, id, 'worker', connectFlags(options))),
  );

  const ca = program.command('ca').description('certificate authority tasks');
  withConnectFlags(
    ca
      .command('create-api-certificate')
      .description('create a certificate and key for an API user (OU=swarm-admin); usable with curl --cert')
      .argument('<name>', 'the user name, e.g. alice')
      .option('--out <dir>', 'where to write NAME.crt, NAME.key and root-ca.crt', '.'),
  ).action(act((name: string, options: Record<string, unknown>) => createApiCertificateCommand(ctx, name, { ...connectFlags(options), out: String(options.out) })));

  withConnectFlags(ca.command('revoke-api-certificate').description("revoke an API user's certificates; the manager refuses them from then on").argument('<name>', 'the user name')).action(
    act((name: string, options: Record<string, unknown>) => revokeApiCertificateCommand(ctx, name, connectFlags(options))),
  );

  withConnectFlags(program.command('leave').description('leave the cluster and delete this node’s key and certificate').option('-f, --force', 'leave even if this node is a manager')).action(
    act((options: Record<string, unknown>) => leaveCommand(ctx, { ...connectFlags(options), force: options.force === true })),
  );

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
    return printError(ctx, error);
  }
}
