/**
 * The command line of muster-ca, Flocker's offline CA (`flocker-ca`): the
 * same commands, arguments, file names and messages, run on the
 * administrator's machine with no manager and no data dir. Failures print
 * `error:`/`hint:` lines; exit codes 0 success, 1 failure, 2 usage error.
 */
import { X509Certificate } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { Command, CommanderError, Help, Option } from 'commander';
import type { Clock } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { checkOutputDir, generateCredentialKey, loadRoot, privateKeyPem, refuseExisting, writeCredential } from './credentials.js';
import {
  KEY_TYPES,
  ROOT_FILES,
  buildLeafCertificate,
  buildRootCertificate,
  checkClusterName,
  checkHostname,
  checkUsername,
  leafFiles,
  uuidV4,
  type CredentialKey,
  type KeyType,
  type LeafProfile,
} from './profiles.js';

/** What muster-ca runs with: its streams, its folder, time and randomness. */
export interface CaToolContext {
  stdout: Writable;
  stderr: Writable;
  /** The folder relative paths and the default input and output folders are taken from. */
  cwd: string;
  clock: Clock;
  random: Random;
  /** Printed by --version. */
  version: string;
}

/** flocker-ca's top-level help, with muster-ca's name (Flocker's cluster docs show it verbatim). */
const ROOT_HELP = `Usage: muster-ca <command> [OPTIONS]
Options:
      --version  Print the program's version and exit.
      --help     Display this help and exit.
  -v, --verbose  Turn on verbose logging.

muster-ca is used to create TLS certificates.
The certificates are used to identify the control service, nodes
and API clients within a Flocker cluster.
Commands:
    initialize                      Initialize a certificate authority in the current
                                    working directory.
    create-control-certificate      Create a certificate for the control service.
    create-node-certificate         Create a certificate for a node.
    create-api-certificate          Create a certificate for an API user.

Run 'muster-ca <command> --help' for a command's options (--inputpath, --outputpath, --key-type).
A muster cluster can be founded on the same root: muster init --ca-cert cluster.crt --ca-key cluster.key
`;

interface LeafFlags {
  inputpath?: string;
  outputpath?: string;
  keyType: KeyType;
}

function keyTypeOption(): Option {
  return new Option('--key-type <type>', "rsa4096 (Flocker's RSA-4096 keys) or p256 (ECDSA P-256, much faster to make)").choices(KEY_TYPES).default('rsa4096');
}

function withPaths(command: Command): Command {
  return command
    .option('-i, --inputpath <dir>', 'Path to directory containing root certificate. Defaults to current working directory.')
    .option('-o, --outputpath <dir>', 'Path to directory to write the certificate and key. Defaults to current working directory.')
    .addOption(keyTypeOption());
}

/** One line per file written, for --verbose. */
function describeWritten(ctx: CaToolContext, files: { cert: string; key: string }, certPem: string, key: CredentialKey): void {
  const cert = new X509Certificate(certPem);
  const san = cert.subjectAltName === undefined ? '' : `, ${cert.subjectAltName}`;
  ctx.stderr.write(
    `wrote ${files.cert} (0600): ${cert.subject.split('\n').join(', ')}${san}, serial ${cert.serialNumber}, valid until ${new Date(cert.validTo).toISOString()}\n`,
  );
  const details = key.privateKey.asymmetricKeyDetails;
  const what = key.kind === 'rsa' ? `RSA ${details?.modulusLength ?? ''}-bit` : 'ECDSA P-256';
  ctx.stderr.write(`wrote ${files.key} (0600): ${what} private key (PKCS#8)\n`);
}

/** `muster-ca initialize <name>`: cluster.crt and cluster.key in the current folder. */
async function initialize(ctx: CaToolContext, name: string, flags: { keyType: KeyType }, verbose: boolean): Promise<number> {
  checkClusterName(name);
  const files = { cert: join(ctx.cwd, ROOT_FILES.cert), key: join(ctx.cwd, ROOT_FILES.key) };
  await refuseExisting(
    [files.cert, files.key],
    'this folder already holds a certificate authority: run muster-ca initialize in another folder, or move the old files away first',
  );
  const key = await generateCredentialKey(flags.keyType);
  const certPem = buildRootCertificate({ name, clusterUuid: uuidV4(ctx.random), key, now: ctx.clock.now(), random: ctx.random });
  await writeCredential(files, { cert: certPem, key: privateKeyPem(key.privateKey) });
  ctx.stdout.write(
    `Created ${ROOT_FILES.key} and ${ROOT_FILES.cert}. Please keep ${ROOT_FILES.key} secret, as anyone who can access it will be able to control your cluster.\n`,
  );
  if (verbose) describeWritten(ctx, files, certPem, key);
  return 0;
}

/** The three `create-*-certificate` commands: load the root, check the targets, make the key and the certificate, write both. */
async function createLeaf(ctx: CaToolContext, profile: LeafProfile, flags: LeafFlags, verbose: boolean): Promise<{ cert: string; key: string }> {
  const root = await loadRoot(resolve(ctx.cwd, flags.inputpath ?? '.'));
  const outDir = resolve(ctx.cwd, flags.outputpath ?? '.');
  await checkOutputDir(outDir);
  const names = leafFiles(profile);
  const files = { cert: join(outDir, names.cert), key: join(outDir, names.key) };
  await refuseExisting([files.cert, files.key], 'move the old files away first, or write elsewhere with --outputpath DIR');
  const key = await generateCredentialKey(flags.keyType);
  const certPem = buildLeafCertificate({ root, profile, publicKey: key.publicKey, now: ctx.clock.now(), random: ctx.random });
  await writeCredential(files, { cert: certPem, key: privateKeyPem(key.privateKey) });
  // The names as the user sees them: bare in the current folder (as flocker-ca prints them), else under --outputpath.
  const shown = (name: string): string => (flags.outputpath === undefined ? name : join(flags.outputpath, name));
  if (verbose) describeWritten(ctx, files, certPem, key);
  return { cert: shown(names.cert), key: shown(names.key) };
}

/** Builds the program; `done` receives the exit code of the command that ran. */
function buildProgram(ctx: CaToolContext, done: (code: number) => void): Command {
  const program = new Command('muster-ca')
    .version(ctx.version, '--version', "Print the program's version and exit.")
    .helpOption('--help', 'Display this help and exit.')
    .option('-v, --verbose', 'Turn on verbose logging.')
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
      outputError: (text, write) => write(`${text.trimEnd()}\nhint: run 'muster-ca --help' for the commands, or 'muster-ca <command> --help' for one\n`),
    })
    .configureHelp({ formatHelp: (cmd, helper) => (cmd.parent === null ? ROOT_HELP : Help.prototype.formatHelp.call(helper, cmd, helper)) })
    .exitOverride();
  const verbose = (): boolean => program.opts<{ verbose?: boolean }>().verbose === true;

  program
    .command('initialize')
    .description('Initialize a certificate authority in the current working directory.')
    .argument('<name>', 'the name of the certificate authority, e.g. "mycluster"')
    .addOption(keyTypeOption())
    .addHelpText(
      'after',
      `\nCreates a private/public key pair and self-signs the public key to produce a new certificate authority root certificate (${ROOT_FILES.cert}, ${ROOT_FILES.key}), stored in the current working directory. Other muster-ca commands run in this directory then create certificates signed by it.\n`,
    )
    .action(async (name: string, flags: { keyType: KeyType }) => done(await initialize(ctx, name, flags, verbose())));

  withPaths(
    program
      .command('create-control-certificate')
      .description('Create a certificate for the control service.')
      .argument('<hostname>', 'the host name the control service API will run on, e.g. "example.org"'),
  )
    .addHelpText(
      'after',
      '\nThe hostname is encoded into the certificate for validation by HTTPS clients, so it should match the external domain name of the machine the control service will run on.\nThe files are named "control-<hostname>.crt" and "control-<hostname>.key".\n',
    )
    .action(async (hostname: string, flags: LeafFlags) => {
      const made = await createLeaf(ctx, { kind: 'control', hostname: checkHostname(hostname) }, flags, verbose());
      ctx.stdout.write(
        `Created ${made.cert} and ${made.key}\nCopy these files to the directory /etc/flocker on your control service machine.\nRename the files to control-service.crt and control-service.key and set the correct permissions by running chmod 0600 on both files.\n`,
      );
      done(0);
    });

  withPaths(program.command('create-node-certificate').description('Create a certificate for a node.'))
    .addHelpText('after', '\nThe node is identified by a new UUID, which names the files: "<uuid>.crt" and "<uuid>.key".\n')
    .action(async (flags: LeafFlags) => {
      const uuid = uuidV4(ctx.random);
      const made = await createLeaf(ctx, { kind: 'node', uuid }, flags, verbose());
      ctx.stdout.write(
        `Created ${made.cert} and ${made.key}. Copy them over to /etc/flocker/node.crt and /etc/flocker/node.key on your node machine and make sure to chmod 0600 them.\n`,
      );
      done(0);
    });

  withPaths(
    program
      .command('create-api-certificate')
      .description('Create a certificate for an API user.')
      .argument('<username>', 'a username for which the certificate should be created'),
  ).action(async (username: string, flags: LeafFlags) => {
    const made = await createLeaf(ctx, { kind: 'api', username: checkUsername(username) }, flags, verbose());
    ctx.stdout.write(`Created ${made.cert} and ${made.key}. You can now give these to your API enduser so they can access the control service API.\n`);
    done(0);
  });
  return program;
}

/** Prints an error as `error:` and, where there is a fix, `hint:`; returns the exit code. */
function printError(ctx: CaToolContext, error: unknown): number {
  if (error instanceof MusterError) {
    ctx.stderr.write(`error: ${error.message}\n`);
    if (error.hint !== undefined) ctx.stderr.write(`hint: ${error.hint}\n`);
    return error.exitCode;
  }
  ctx.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
}

/** Runs muster-ca with `argv` (without node and script); returns the exit code. */
export async function runCaTool(ctx: CaToolContext, argv: readonly string[]): Promise<number> {
  let code: number | undefined;
  const program = buildProgram(ctx, (c) => {
    code = c;
  });
  if (argv.length === 0) {
    // `muster-ca` alone prints its help on standard output and succeeds, as flocker-ca does.
    program.outputHelp();
    return 0;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code ?? 2;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help' ? 0 : 2;
    }
    return printError(ctx, error);
  }
}
