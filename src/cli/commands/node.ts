/** `muster node ls | inspect | rm | promote | demote`: the node inventory. */
import type { Command } from 'commander';
import { MusterError } from '../../core/errors.js';
import { ID_LENGTH } from '../../core/ids.js';
import type { NodeRole } from '../../core/roles.js';
import { NODES_PAGE } from '../../api/pages.js';
import * as Plain from '../../api/plain-schemas.js';
import type { NodeView } from '../../api/schemas.js';
import { withConnection, type ConnectFlags } from '../connect.js';
import type { CliContext } from '../context.js';
import { emit, formatHelp, listFields, listPrinter, pagedTablePrinter, parseListFormat, type ListFields, type ListPrinter } from '../list-format.js';
import { relativeTime } from '../output.js';
import { act, collect, connectFlags, withConnectFlags, type Done } from '../options.js';
import { readEnv } from '../settings.js';

const HEADER = ['ID', 'HOSTNAME', 'ROLE', 'STATUS', 'MANAGER STATUS', 'CERT EXPIRES', 'LAST SEEN'];

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

/** `label=K` matches a node that has label K, `label=K=V` one whose K is V (docker's semantics). */
function hasLabel(node: NodeView, value: string): boolean {
  const eq = value.indexOf('=');
  const key = eq < 0 ? value : value.slice(0, eq);
  return Object.hasOwn(node.labels, key) && (eq < 0 || node.labels[key] === value.slice(eq + 1));
}

/** The filters `node ls --filter` takes, as docker's: role, status, labels. */
const FILTERS: Record<string, (node: NodeView, value: string) => boolean> = {
  role: (node, value) => node.role === value,
  status: (node, value) => node.status === value,
  id: (node, value) => node.id.startsWith(value),
  hostname: (node, value) => node.hostname === value,
  label: hasLabel,
};

function parseFilters(items: readonly string[]): ((node: NodeView) => boolean)[] {
  return items.map((item) => {
    const eq = item.indexOf('=');
    const key = eq > 0 ? item.slice(0, eq) : '';
    const test = FILTERS[key];
    if (test === undefined)
      throw new MusterError('USAGE', `unknown filter '${item.slice(0, 60)}'`, {
        hint: `filter on ${Object.keys(FILTERS)
          .map((k) => `${k}=…`)
          .join(', ')}`,
      });
    const value = item.slice(eq + 1);
    if (key === 'role' && value !== 'manager' && value !== 'worker')
      throw new MusterError('USAGE', `--filter ${item.slice(0, 60)}: a role is manager or worker`);
    if (key === 'label' && (value === '' || value.startsWith('=')))
      throw new MusterError('USAGE', `--filter ${item.slice(0, 60)} names no label`, {
        hint: 'label=KEY matches nodes that have the label, label=KEY=VALUE those where it has that value',
      });
    return (node) => test(node, value);
  });
}

/**
 * What `node ls --format` templates may name: the table's columns (plain:
 * `.ID` without the " *" of this node, `.Role` without "(renewing)"),
 * `.Self`, then the JSON fields (`.Labels`, `.CertNotAfter`…).
 */
function nodeFields(now: number, selfId: () => string | undefined): ListFields<NodeView> {
  return listFields<NodeView>(
    {
      ID: { header: 'ID', value: (n) => n.id },
      Hostname: { header: 'HOSTNAME', value: (n) => n.hostname },
      Role: { header: 'ROLE', value: (n) => n.role },
      Status: { header: 'STATUS', value: (n) => n.status },
      ManagerStatus: { header: 'MANAGER STATUS', value: (n) => n.managerStatus },
      CertExpires: { header: 'CERT EXPIRES', value: (n) => (n.removed ? '-' : relativeTime(Date.parse(n.certNotAfter), now)) },
      LastSeen: { header: 'LAST SEEN', value: (n) => relativeTime(Date.parse(n.lastSeenAt), now) },
      Self: { header: 'SELF', value: (n) => n.id === selfId() },
    },
    Object.keys(Plain.NodeView.properties ?? {}),
  );
}

const quietPrinter = (): ListPrinter<NodeView> => ({ page: (nodes) => nodes.map((n) => `${n.id}\n`).join(''), end: () => '' });

/**
 * The table: pages line up from the widths known before any row (an ID,
 * with " *" on this node's; the longest role and status words).
 */
function tablePrinter(selfId: string | undefined, now: number): ListPrinter<NodeView> {
  return pagedTablePrinter(HEADER, (n) => nodeRow(n, selfId, now), [ID_LENGTH + (selfId === undefined ? 0 : 2), 0, 'manager'.length, 'removed'.length]);
}

/** `muster node ls [-q] [--filter k=v …] [--all] [--format table|json|TEMPLATE]`: pages through the nodes, printing as they arrive. */
export async function nodeListCommand(
  ctx: CliContext,
  flags: ConnectFlags & { format?: string; quiet?: boolean; filter?: string[]; all?: boolean },
): Promise<number> {
  const now = ctx.clock.now();
  let selfId: string | undefined;
  const format = parseListFormat(
    flags.format,
    nodeFields(now, () => selfId),
  );
  const filters = parseFilters(flags.filter ?? []);
  // Removed nodes only with --all (or when asked for by status); the manager leaves them out otherwise.
  const all = flags.all === true || (flags.filter ?? []).includes('status=removed');
  const pageSize = readEnv(ctx).pageSize ?? NODES_PAGE.default;
  return withConnection(ctx, flags, async ({ client, local }) => {
    selfId = local?.state.nodeId;
    const printer = flags.quiet === true ? quietPrinter() : listPrinter(format, () => tablePrinter(selfId, now));
    for await (const page of client.nodePages({ pageSize, all })) {
      await emit(ctx.stdout, printer.page(page.filter((n) => filters.every((f) => f(n)))));
    }
    await emit(ctx.stdout, printer.end());
    return 0;
  });
}

/** `muster node inspect REF` (`self`: the node whose certificate makes the call, through /v1/nodes/self). */
async function nodeInspectCommand(ctx: CliContext, ref: string, flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    const node = ref === 'self' ? (await client.self()).node : await client.call('getNode', { params: { id: ref } });
    ctx.stdout.write(`${JSON.stringify(node, null, 2)}\n`);
    return 0;
  });
}

/**
 * What removing a manager does not take away: the cluster's data key was
 * replaced, but the manager knew the current CA key (and may have kept a
 * copy of the store); only a new root cuts it off.
 */
const FORMER_MANAGER_NOTE =
  "The cluster's data key was replaced, but that manager knew the current CA key.\n" +
  "To cut it off, rotate the root CA: 'muster ca --rotate' (the new root's key is sealed under a key it never had).\n";

/** `muster node rm [-f] REF` (`self` is this host's node; /v1/nodes/self would be a leave). */
async function nodeRemoveCommand(ctx: CliContext, ref: string, flags: ConnectFlags & { force?: boolean; revokeAll?: boolean }): Promise<number> {
  return withConnection(ctx, flags, async ({ client, local }) => {
    if (ref === 'self' && local === undefined)
      throw new MusterError('USAGE', "'self' names the node of this host's data dir", { hint: 'name the node by ID, ID prefix or hostname' });
    const node = await client.call('removeNode', {
      params: { id: ref === 'self' ? local!.state.nodeId : ref },
      query: { ...(flags.force === true ? { force: '1' } : {}), ...(flags.revokeAll === true ? { revokeAll: '1' } : {}) },
    });
    ctx.stdout.write(`Node ${node.id} removed; its certificate is refused from now on.\n`);
    if (node.role === 'manager') ctx.stdout.write(FORMER_MANAGER_NOTE);
    return 0;
  });
}

/** `muster node promote|demote ID` */
async function nodeRoleCommand(ctx: CliContext, id: string, role: NodeRole, flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    const node = await client.call(role === 'manager' ? 'promote' : 'demote', { params: { id } });
    const verb = role === 'manager' ? 'promoted to a manager' : 'demoted to a worker';
    const note = node.certRole === role ? '' : ' It receives a certificate with the new role at its next renewal, which it is told to do now.';
    ctx.stdout.write(`Node ${node.id} ${verb}.${note}\n`);
    // Just demoted: its certificate still says manager until it renews.
    if (role === 'worker' && node.certRole === 'manager') ctx.stdout.write(FORMER_MANAGER_NOTE);
    return 0;
  });
}

/**
 * `muster node update --add-san PATTERN --rm-san PATTERN (NODE | --for-label KEY=VALUE)`:
 * the names a node's service certificates may carry besides its hostname and
 * advertise address, for one node or for every node with a label.
 */
async function nodeUpdateCommand(
  ctx: CliContext,
  ref: string | undefined,
  flags: ConnectFlags & { addSan: string[]; rmSan: string[]; forLabel?: string },
): Promise<number> {
  if ((ref === undefined) === (flags.forLabel === undefined))
    throw new MusterError('USAGE', 'name a node, or a label with --for-label KEY=VALUE (not both)', {
      hint: "muster node update --add-san '*.example.com' NODE",
    });
  const patch = { ...(flags.addSan.length === 0 ? {} : { addSans: flags.addSan }), ...(flags.rmSan.length === 0 ? {} : { rmSans: flags.rmSan }) };
  return withConnection(ctx, flags, async ({ client, local }) => {
    if (flags.forLabel !== undefined) {
      if (!/^[^=]+=/.test(flags.forLabel)) throw new MusterError('USAGE', `--for-label ${flags.forLabel.slice(0, 60)} is not KEY=VALUE`);
      const policy = await client.call('updateSanPolicy', { body: { label: flags.forLabel, ...patch } });
      const patterns = policy.labels.find((l) => l.label === flags.forLabel)?.patterns ?? [];
      ctx.stdout.write(
        `Nodes with label ${flags.forLabel} may name in service certificates: ${patterns.length === 0 ? 'nothing more than their own names' : patterns.join(', ')}.\n`,
      );
      return 0;
    }
    if (ref === 'self' && local === undefined)
      throw new MusterError('USAGE', "'self' names the node of this host's data dir", { hint: 'name the node by ID, ID prefix or hostname' });
    const node = await client.call('updateNode', { params: { id: ref === 'self' ? local!.state.nodeId : ref! }, body: patch });
    const patterns = node.sanPatterns ?? [];
    ctx.stdout.write(
      `Node ${node.id} (${node.hostname}) may name in service certificates: its own names${patterns.length === 0 ? '' : `, ${patterns.join(', ')}`}.\n`,
    );
    return 0;
  });
}

/** Registers the node commands. */
export function registerNode(program: Command, ctx: CliContext, done: Done): void {
  const run = act(done);
  const node = program.command('node').description('list and manage nodes');
  withConnectFlags(
    node
      .command('ls')
      .description('list nodes')
      .option('-q, --quiet', 'print node IDs only')
      .option(
        '-f, --filter <key=value>',
        'keep nodes that match all of: role=manager|worker, status=ready|down|removed, id=PREFIX, hostname=NAME, label=KEY (has it), label=KEY=VALUE (repeatable)',
        collect,
        [],
      )
      .option('-a, --all', 'include removed nodes')
      .option('--format <format>', formatHelp(nodeFields(0, () => undefined))),
  ).action(
    run((options: Record<string, unknown>) =>
      nodeListCommand(ctx, {
        ...connectFlags(options),
        ...(typeof options.format === 'string' ? { format: options.format } : {}),
        quiet: options.quiet === true,
        all: options.all === true,
        filter: options.filter as string[],
      }),
    ),
  );
  withConnectFlags(
    node.command('inspect').description('show one node as JSON').argument('<node>', 'self, a node ID, a unique ID prefix, or a hostname'),
  ).action(run((id: string, options: Record<string, unknown>) => nodeInspectCommand(ctx, id, connectFlags(options))));
  withConnectFlags(
    node
      .command('rm')
      .description('remove a node; its certificate is refused from then on and listed on the CRL')
      .argument('<node>', 'self, a node ID, a unique ID prefix, or a hostname')
      .option('-f, --force', 'remove a node that is still active')
      .option('--revoke-all', 'after a key compromise: list every still-valid certificate of the node on the CRL, not only its current one'),
  ).action(
    run((id: string, options: Record<string, unknown>) =>
      nodeRemoveCommand(ctx, id, { ...connectFlags(options), force: options.force === true, revokeAll: options.revokeAll === true }),
    ),
  );
  withConnectFlags(
    node
      .command('update')
      .description("change what a node's service certificates may name (muster cert add --san), for one node or every node with a label")
      .argument('[node]', 'self, a node ID, a unique ID prefix, or a hostname')
      .option('--add-san <pattern>', "allow a name: exact DNS name, '*.example.com' (one label), or IP address (repeatable)", collect, [])
      .option('--rm-san <pattern>', 'withdraw a name allowed before (repeatable)', collect, [])
      .option('--for-label <key=value>', 'instead of a node: every node with this label'),
  ).action(
    run((id: string | undefined, options: Record<string, unknown>) =>
      nodeUpdateCommand(ctx, id, {
        ...connectFlags(options),
        addSan: options.addSan as string[],
        rmSan: options.rmSan as string[],
        ...(typeof options.forLabel === 'string' ? { forLabel: options.forLabel } : {}),
      }),
    ),
  );
  withConnectFlags(node.command('promote').description('make a worker a manager').argument('<node>', 'a node ID, a unique ID prefix, or a hostname')).action(
    run((id: string, options: Record<string, unknown>) => nodeRoleCommand(ctx, id, 'manager', connectFlags(options))),
  );
  withConnectFlags(
    node.command('demote').description('make a manager a worker').argument('<node>', 'self, a node ID, a unique ID prefix, or a hostname'),
  ).action(run((id: string, options: Record<string, unknown>) => nodeRoleCommand(ctx, id, 'worker', connectFlags(options))));
}
