/**
 * The client commands: join-token, update, node, ca create-api-certificate,
 * leave. Each connects (see connect.ts), makes one or two API calls and
 * prints what happened and what to do next.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MusterError } from '../core/errors.js';
import type { NodeRole } from '../core/roles.js';
import { formatDuration, parseCertExpiry } from '../config/duration.js';
import { createCsr } from '../pki/csr.js';
import { generateNodeKey } from '../pki/keys.js';
import { KeyStore, writeFileAtomic } from '../agent/key-store.js';
import type { NodeView } from '../api/schemas.js';
import type { CliContext } from './context.js';
import { connect, type ConnectFlags, type Connection } from './connect.js';
import { joinInstructions, readExternalCas } from './daemon.js';
import { formatTable, paint, relativeTime, useColour } from './output.js';

async function withConnection<T>(ctx: CliContext, flags: ConnectFlags, fn: (connection: Connection) => Promise<T>): Promise<T> {
  const connection = await connect(ctx, flags);
  try {
    return await fn(connection);
  } finally {
    connection.client.close();
  }
}

function parseRole(text: string): NodeRole {
  if (text === 'worker' || text === 'manager') return text;
  throw new MusterError('USAGE', `unknown role '${text}'`, { hint: "use 'worker' or 'manager'" });
}

/** `muster join-token [-q] [--rotate] worker|manager` */
export async function joinTokenCommand(ctx: CliContext, roleText: string, flags: ConnectFlags & { quiet?: boolean; rotate?: boolean }): Promise<number> {
  const role = parseRole(roleText);
  return withConnection(ctx, flags, async ({ client }) => {
    const tokens = flags.rotate === true ? await client.rotateToken(role) : await client.joinTokens();
    const token = tokens[role];
    if (flags.quiet === true) {
      ctx.stdout.write(`${token}\n`);
      return 0;
    }
    if (flags.rotate === true) ctx.stdout.write(`Successfully rotated ${role} join token. The previous ${role} token is refused from now on.\n\n`);
    ctx.stdout.write(joinInstructions(role, token, tokens.managerAddr));
    return 0;
  });
}

/** `muster update [--cert-expiry DUR] [--external-ca SPEC …]` */
export async function updateCommand(ctx: CliContext, flags: ConnectFlags & { certExpiry?: string; externalCa?: string[] }): Promise<number> {
  const external = flags.externalCa ?? [];
  if (flags.certExpiry === undefined && external.length === 0) {
    throw new MusterError('USAGE', 'nothing to update', { hint: 'pass --cert-expiry DUR (e.g. 720h) or --external-ca protocol=cfssl,url=…' });
  }
  // Refuse bad input before connecting.
  const ms = flags.certExpiry === undefined ? undefined : parseCertExpiry(flags.certExpiry);
  const externalCAs = external.length === 0 ? undefined : await readExternalCas(external);
  return withConnection(ctx, flags, async ({ client }) => {
    const view = await client.updateCluster({ ...(ms === undefined ? {} : { certExpiry: formatDuration(ms) }), ...(externalCAs === undefined ? {} : { externalCAs }) });
    if (ms !== undefined) {
      ctx.stdout.write(
        `Certificate expiry set to ${view.certExpiry}. New certificates are valid for ${view.certExpiry}; ` +
          `nodes whose certificates outlive that renew within a minute.\n`,
      );
    }
    if (externalCAs !== undefined) ctx.stdout.write(`External CAs set to ${view.ca.externalUrls.join(', ')} (tried in that order).\n`);
    return 0;
  });
}

/** One row of `node ls`. */
function nodeRow(node: NodeView, selfId: string | undefined, now: number): string[] {
  return [
    `${node.id}${node.id === selfId ? ' *' : ''}`,
    node.hostname,
    node.role === node.certRole ? node.role : `${node.role} (renewing)`,
    node.status,
    node.removed ? '-' : relativeTime(Date.parse(node.certNotAfter), now),
    relativeTime(Date.parse(node.lastSeenAt), now),
  ];
}

/** `muster node ls [--format table|json]` */
export async function nodeListCommand(ctx: CliContext, flags: ConnectFlags & { format?: string }): Promise<number> {
  const format = flags.format ?? 'table';
  if (format !== 'table' && format !== 'json') throw new MusterError('USAGE', `unknown format '${format}'`, { hint: "use --format table or --format json" });
  return withConnection(ctx, flags, async ({ client, local }) => {
    const nodes = await client.listNodes();
    if (format === 'json') {
      ctx.stdout.write(`${JSON.stringify(nodes, null, 2)}\n`);
      return 0;
    }
    const now = ctx.clock.now();
    ctx.stdout.write(formatTable(['ID', 'HOSTNAME', 'ROLE', 'STATUS', 'CERT EXPIRES', 'LAST SEEN'], nodes.map((n) => nodeRow(n, local?.state.nodeId, now))));
    return 0;
  });
}

/** `muster node inspect ID` */
export async function nodeInspectCommand(ctx: CliContext, id: string, flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    ctx.stdout.write(`${JSON.stringify(await client.getNode(id), null, 2)}\n`);
    return 0;
  });
}

/** `muster node rm [-f] ID` */
export async function nodeRemoveCommand(ctx: CliContext, id: string, flags: ConnectFlags & { force?: boolean }): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    await client.removeNode(id, flags.force === true);
    ctx.stdout.write(`Node ${id} removed; its certificate is refused from now on.\n`);
    return 0;
  });
}

/** `muster node promote|demote ID` */
export async function nodeRoleCommand(ctx: CliContext, id: string, role: NodeRole, flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    const node = await client.setRole(id, role);
    const verb = role === 'manager' ? 'promoted to a manager' : 'demoted to a worker';
    const note = node.certRole === role ? '' : ' It receives a certificate with the new role at its next renewal, within a minute.';
    ctx.stdout.write(`Node ${id} ${verb}.${note}\n`);
    return 0;
  });
}

/** `muster ca create-api-certificate NAME [--out DIR]` (Flocker's model: the certificate is the identity). */
export async function createApiCertificateCommand(ctx: CliContext, name: string, flags: ConnectFlags & { out?: string }): Promise<number> {
  const outDir = resolve(flags.out ?? '.');
  return withConnection(ctx, flags, async ({ client, address }) => {
    const key = await generateNodeKey(); // made here; only the CSR travels
    const issued = await client.createUser(name, createCsr({ privateKey: key.privateKey, subject: { commonName: name } }));
    await mkdir(outDir, { recursive: true });
    const certFile = join(outDir, `${name}.crt`);
    const keyFile = join(outDir, `${name}.key`);
    const rootFile = join(outDir, 'root-ca.crt');
    await writeFileAtomic(keyFile, key.privateKeyPem, 0o600);
    await writeFileAtomic(certFile, issued.certificate, 0o644);
    await writeFileAtomic(rootFile, issued.rootCA, 0o644);
    const colour = useColour(ctx.stdout, ctx.env);
    ctx.stdout.write(
      `Created ${certFile} and ${keyFile} (API user ${name}, valid until ${issued.notAfter}), and ${rootFile}.\n` +
        `Give these to the API user over a secure channel (scp, sftp) and delete your copies; anyone with ${name}.key can administer the cluster.\n\n` +
        `List the nodes with curl:\n\n    ${paint(`curl --cacert ${rootFile} --cert ${certFile} --key ${keyFile} https://${address}/v1/nodes`, 'bold', colour)}\n\n`,
    );
    return 0;
  });
}

/** `muster ca revoke-api-certificate NAME`: the user's certificates are refused from now on. */
export async function revokeApiCertificateCommand(ctx: CliContext, name: string, flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    const result = await client.revokeUser(name);
    ctx.stdout.write(
      result.revoked === 0
        ? `API user ${name} had no valid certificates left to revoke.\n`
        : `Revoked ${result.revoked} certificate${result.revoked === 1 ? '' : 's'} of API user ${name}; the manager refuses ${result.revoked === 1 ? 'it' : 'them'} from now on.\n`,
    );
    return 0;
  });
}

/** `muster leave [--force]` */
export async function leaveCommand(ctx: CliContext, flags: ConnectFlags & { force?: boolean }): Promise<number> {
  const connection = await connect(ctx, { ...flags, host: '' });
  try {
    const local = connection.local;
    if (local === undefined) throw new MusterError('NOT_INITIALISED', 'leave runs on the node that leaves');
    if (local.state.role === 'manager' && flags.force !== true) {
      throw new MusterError('LEAVE_MANAGER', `this node (${local.state.nodeId}) is a manager`, { hint: "use 'muster leave --force' to leave anyway" });
    }
    await connection.client.leave();
    await new KeyStore(local.layout).remove();
    await rm(local.layout.nodeJson, { force: true });
    if (local.state.manager !== undefined) await rm(local.layout.managerDir, { recursive: true, force: true });
    ctx.stdout.write(`Node ${local.state.nodeId} left the cluster; its certificate and key were deleted from ${local.layout.dataDir}.\n`);
    return 0;
  } finally {
    connection.client.close();
  }
}
