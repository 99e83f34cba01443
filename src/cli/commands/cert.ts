/**
 * `muster cert add | ls | rm` (issue 28): certificates for this node's other
 * services (dockerd, nginx), made and kept renewed by the running node. The
 * command talks to the node's agent over <data-dir>/agent.sock; the agent
 * makes the key, has a manager sign it, writes the files and runs the hook.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { parseDuration } from '../../core/duration.js';
import { MusterError } from '../../core/errors.js';
import { isServiceName, normaliseSan } from '../../core/san-pattern.js';
import { AGENT_ROUTES, type AddServiceRequest } from '../../agent/agent-socket.js';
import { callAgent } from '../agent-client.js';
import { DEFAULT_HOOK_TIMEOUT_MS, splitCommand, type ServiceStatus } from '../../agent/service-certs.js';
import type { CliContext } from '../context.js';
import { act, collect, type Done } from '../options.js';
import { formatTable, relativeTime } from '../output.js';
import { layoutFor } from '../settings.js';

/** Reads `--mode 0640` (octal). */
function parseMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text))
    throw new MusterError('USAGE', `--mode ${text.slice(0, 20)} is not an octal file mode`, { hint: 'write it like 0600 or 0640' });
  const mode = Number.parseInt(text, 8);
  // The key is never for others: a group (nginx's) may read it, nobody else.
  if ((mode & 0o007) !== 0)
    throw new MusterError('USAGE', `--mode ${text} would let every user read the key`, {
      hint: 'give the service a group with --owner USER:GROUP and use 0640',
    });
  return mode;
}

/** What a status line says of a hook. */
function hookText(status: ServiceStatus): string {
  if (status.definition.exec === undefined) return '-';
  const { hook } = status;
  if (hook.lastError !== undefined) return `failing (${hook.failures}): ${hook.lastError}`;
  return hook.runs === 0 ? 'not run yet' : `ok (${hook.failures} failed)`;
}

interface AddFlags {
  dataDir?: string;
  san: string[];
  client?: boolean;
  out?: string;
  layout?: string;
  owner?: string;
  mode?: string;
  exec?: string;
  execTimeout?: string;
}

/** `muster cert add NAME …` */
async function certAddCommand(ctx: CliContext, name: string, flags: AddFlags): Promise<number> {
  if (!isServiceName(name)) throw new MusterError('SERVICE_NAME_INVALID', `${JSON.stringify(name.slice(0, 64))} is not a valid service certificate name`);
  const layout = flags.layout ?? 'pem';
  if (layout !== 'pem' && layout !== 'docker')
    throw new MusterError('USAGE', `--layout ${layout.slice(0, 20)} is not a layout`, {
      hint: 'use pem (NAME.crt, NAME.key, ca.crt) or docker (ca.pem with server-cert.pem/server-key.pem, or cert.pem/key.pem with --client)',
    });
  const execTimeoutMs = flags.execTimeout === undefined ? DEFAULT_HOOK_TIMEOUT_MS : parseDuration(flags.execTimeout);
  const request: AddServiceRequest = {
    name,
    sans: flags.san.map(normaliseSan),
    client: flags.client === true,
    out: resolve(flags.out ?? name),
    layout,
    ...(flags.owner === undefined ? {} : { owner: flags.owner }),
    ...(flags.mode === undefined ? {} : { mode: parseMode(flags.mode) }),
    ...(flags.exec === undefined ? {} : { exec: splitCommand(flags.exec) }),
    execTimeoutMs,
  };
  const dir = layoutFor(ctx, flags);
  // The node waits for the hook before it answers: give it the hook's time and then some.
  const { certificate } = await callAgent(dir.agentSocket, 'POST', AGENT_ROUTES.certificates, request, execTimeoutMs + 60_000);
  if (certificate === undefined) throw new MusterError('INTERNAL', 'the node answered without the certificate');
  const { files } = certificate;
  ctx.stdout.write(
    `Service certificate ${name} (${certificate.sans?.join(', ') ?? ''}) written to ${certificate.definition.out}:\n` +
      `  ${files.cert}\n  ${files.key}\n  ${files.ca}\n` +
      `It is valid until ${certificate.notAfter ?? '?'}, and renewed with this node's certificate.\n`,
  );
  if (certificate.hook.lastError !== undefined) {
    ctx.stderr.write(`warning: the hook failed (${certificate.hook.lastError}); the node retries it, see 'muster cert ls'\n`);
  } else if (certificate.definition.exec !== undefined) {
    ctx.stdout.write('The hook ran.\n');
  }
  return 0;
}

/** `muster cert ls [--format json]` */
async function certListCommand(ctx: CliContext, flags: { dataDir?: string; format?: string }): Promise<number> {
  const dir = layoutFor(ctx, flags);
  const answer = await callAgent(dir.agentSocket, 'GET', AGENT_ROUTES.certificates, undefined, 15_000);
  const list = answer.certificates ?? [];
  if (flags.format === 'json') {
    for (const status of list) ctx.stdout.write(`${JSON.stringify(status)}\n`);
    return 0;
  }
  if (flags.format !== undefined && flags.format !== 'table')
    throw new MusterError('USAGE', `--format ${flags.format.slice(0, 20)} is not a format`, { hint: 'use table or json' });
  const now = ctx.clock.now();
  const rows = list.map((s) => [
    s.definition.name,
    s.definition.client ? 'client' : 'server',
    s.sans?.join(',') ?? '',
    s.definition.out,
    s.definition.layout,
    s.issueError === undefined ? (s.notAfter === undefined ? '-' : relativeTime(Date.parse(s.notAfter), now)) : `renewal failing: ${s.issueError.code}`,
    hookText(s),
  ]);
  ctx.stdout.write(formatTable(['NAME', 'USE', 'NAMES', 'FOLDER', 'LAYOUT', 'EXPIRES', 'HOOK'], rows));
  if (answer.hookFailures !== undefined && answer.hookFailures > 0) ctx.stdout.write(`Hook failures since the node started: ${answer.hookFailures}\n`);
  return 0;
}

/** `muster cert rm NAME` */
async function certRemoveCommand(ctx: CliContext, name: string, flags: { dataDir?: string }): Promise<number> {
  const dir = layoutFor(ctx, flags);
  const { certificate } = await callAgent(dir.agentSocket, 'DELETE', `${AGENT_ROUTES.certificates}/${encodeURIComponent(name)}`, undefined, 15_000);
  ctx.stdout.write(`Service certificate ${name} is no longer renewed; its files stay in ${certificate?.definition.out ?? '?'}.\n`);
  return 0;
}

/** Registers the cert commands. */
export function registerCert(program: Command, ctx: CliContext, done: Done): void {
  const run = act(done);
  const dataDir = '--data-dir <dir>';
  const dataDirHelp = 'the data dir of the running node (default: $MUSTER_DATA_DIR, /var/lib/muster as root, ~/.local/state/muster otherwise)';
  const cert = program.command('cert').description("certificates for this node's other services (dockerd, nginx), kept renewed by the running node");
  cert
    .command('add')
    .description('have the running node make a key, get it signed by a manager, write the files, and keep them renewed')
    .argument('<name>', 'the service certificate name (lower-case letters, digits, . _ -)')
    .option('--san <name>', "a DNS name or IP address the certificate names (repeatable; default: the node's hostname and advertise address)", collect, [])
    .option('--client', 'a client certificate (clientAuth only); else a server certificate (serverAuth only)')
    .option('--out <dir>', 'where the files go (default: ./NAME)')
    .option(
      '--layout <layout>',
      'file names: pem (NAME.crt, NAME.key, ca.crt) or docker (ca.pem, server-cert.pem, server-key.pem; with --client ca.pem, cert.pem, key.pem)',
      'pem',
    )
    .option('--owner <user[:group]>', 'owner of the files (and of the folder when the node creates it)')
    .option('--mode <mode>', 'mode of the key file, e.g. 0640 for a group that reads it (default 0600)')
    .option('--exec <command>', "run after each write, without a shell (give 'sh -c …' for one), e.g. 'systemctl reload nginx'")
    .option('--exec-timeout <duration>', 'kill the hook after this long and count it as failed (default 30s)')
    .option(dataDir, dataDirHelp)
    .action(run((name: string, options: Record<string, unknown>) => certAddCommand(ctx, name, options as unknown as AddFlags)));
  cert
    .command('ls')
    .description("list this node's service certificates: names, folder, expiry, and how their hooks fare")
    .option('--format <format>', 'table or json (one object per line)')
    .option(dataDir, dataDirHelp)
    .action(run((options: Record<string, unknown>) => certListCommand(ctx, options as { dataDir?: string; format?: string })));
  cert
    .command('rm')
    .description('stop renewing a service certificate (its files stay)')
    .argument('<name>', 'the service certificate name')
    .option(dataDir, dataDirHelp)
    .action(run((name: string, options: Record<string, unknown>) => certRemoveCommand(ctx, name, options as { dataDir?: string })));
}
