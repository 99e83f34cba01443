/** `muster node ls | inspect | rm | promote | demote`: the node inventory. */
import type { Command } from 'commander';
import { MusterError } from '../../core/errors.js';
import type { NodeRole } from '../../core/roles.js';
import type { NodeView } from '../../api/schemas.js';
import { withConnection, type ConnectFlags } from '../connect.js';
import type { CliContext } from '../context.js';
import { formatTable, relativeTime } from '../output.js';
import { act, connectFlags, withConnectFlags, type Done } from '../options.js';

/** One row of `node ls`. */
function nodeRow(node: NodeView, selfId: string | undefined, now: number): string[] {
  return [
    `${node.id}${node.id === selfId ? ' *' : ''}`,
    node.hostname,
    node.role === node.certRole ? node.role : `${node.role} (renewing)`,
    node.status,
    node.managerStatus ?? '',
    node.removed ? '-' : relativeTime(Date.parse(node.certNotAfter), now),
    relativeTime(Date.parse(node.lastSeenAt), now),
  ];
}

/** `muster node ls [--format table|json]` */
export async function nodeListCommand(ctx: CliContext, flags: ConnectFlags & { format?: string }): Promise<number> {
  const format = flags.format ?? 'table';
  if (format !== 'table' && format !== 'json') throw new MusterError('USAGE', `unknown format '${format}'`, { hint: 'use --format table or --format json' });
  return withConnection(ctx, flags, async ({ client, local }) => {
    const nodes = await client.listNodes();
    if (format === 'json') {
      ctx.stdout.write(`${JSON.stringify(nodes, null, 2)}\n`);
      return 0;
    }
    const now = ctx.clock.now();
    ctx.stdout.write(formatTable(['ID', 'HOSTNAME', 'ROLE', 'STATUS', 'MANAGER STATUS', 'CERT EXPIRES', 'LAST SEEN'], nodes.map((n) => nodeRow(n, local?.state.nodeId, now))));
    return 0;
  });
}

/** `muster node inspect ID` */
async function nodeInspectCommand(ctx: CliContext, id: string, flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    ctx.stdout.write(`${JSON.stringify(await client.getNode(id), null, 2)}\n`);
    return 0;
  });
}

/** `muster node rm [-f] ID` */
async function nodeRemoveCommand(ctx: CliContext, id: string, flags: ConnectFlags & { force?: boolean }): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    await client.removeNode(id, flags.force === true);
    ctx.stdout.write(`Node ${id} removed; its certificate is refused from now on.\n`);
    return 0;
  });
}

/** `muster node promote|demote ID` */
async function nodeRoleCommand(ctx: CliContext, id: string, role: NodeRole, flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    const node = await client.setRole(id, role);
    const verb = role === 'manager' ? 'promoted to a manager' : 'demoted to a worker';
    const note = node.certRole === role ? '' : ' It receives a certificate with the new role at its next renewal, within a minute.';
    ctx.stdout.write(`Node ${id} ${verb}.${note}\n`);
    return 0;
  });
}

/** Registers the node commands. */
export function registerNode(program: Command, ctx: CliContext, done: Done): void {
  const run = act(done);
  const node = program.command('node').description('list and manage nodes');
  withConnectFlags(node.command('ls').description('list nodes').option('--format <format>', 'table or json', 'table')).action(
    run((options: Record<string, unknown>) => nodeListCommand(ctx, { ...connectFlags(options), format: String(options.format) })),
  );
  withConnectFlags(node.command('inspect').description('show one node as JSON').argument('<id>', 'node ID')).action(
    run((id: string, options: Record<string, unknown>) => nodeInspectCommand(ctx, id, connectFlags(options))),
  );
  withConnectFlags(node.command('rm').description('remove a node; its certificate is refused from then on').argument('<id>', 'node ID').option('-f, --force', 'remove a node that is still active')).action(
    run((id: string, options: Record<string, unknown>) => nodeRemoveCommand(ctx, id, { ...connectFlags(options), force: options.force === true })),
  );
  withConnectFlags(node.command('promote').description('make a worker a manager').argument('<id>', 'node ID')).action(
    run((id: string, options: Record<string, unknown>) => nodeRoleCommand(ctx, id, 'manager', connectFlags(options))),
  );
  withConnectFlags(node.command('demote').description('make a manager a worker').argument('<id>', 'node ID')).action(
    run((id: string, options: Record<string, unknown>) => nodeRoleCommand(ctx, id, 'worker', connectFlags(options))),
  );
}
