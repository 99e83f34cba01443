/**
 * `muster join-token [-q] [--rotate] worker|manager`: show or rotate a classic
 * join token; `join-token create|ls|rm`: scoped tokens with a lifetime, a use
 * count and labels.
 */
import type { Command } from 'commander';
import { parseDuration } from '../../core/duration.js';
import { MusterError } from '../../core/errors.js';
import type { NodeRole } from '../../core/roles.js';
import { ScopedTokenView, type ScopedTokenRequest } from '../../api/schemas.js';
import { withConnection, type ConnectFlags } from '../connect.js';
import type { CliContext } from '../context.js';
import { joinInstructions } from '../instructions.js';
import { formatHelp, listFields, listPrinter, listText, pagedTablePrinter, parseListFormat, type ListField, type ListFields } from '../list-format.js';
import { relativeTime } from '../output.js';
import { act, collect, connectFlags, parseLabels, withConnectFlags, type Done } from '../options.js';

/** A role named on the command line. */
export function parseRole(text: string): NodeRole {
  if (text === 'worker' || text === 'manager') return text;
  throw new MusterError('USAGE', `unknown role '${text}'`, { hint: "use 'worker' or 'manager'" });
}

/** `muster join-token [-q] [--rotate] worker|manager` */
export async function joinTokenCommand(ctx: CliContext, roleText: string, flags: ConnectFlags & { quiet?: boolean; rotate?: boolean }): Promise<number> {
  const role = parseRole(roleText);
  return withConnection(ctx, flags, async ({ client }) => {
    const tokens = flags.rotate === true ? await client.call('rotateToken', { params: { role: role } }) : await client.call('joinTokens');
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

/** Flags of `join-token create`. */
export interface CreateFlags extends ConnectFlags {
  ttl?: string;
  uses?: string;
  label?: string[];
  quiet?: boolean;
}

function parseUses(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[1-9][0-9]{0,6}$/.test(text) || Number(text) > 1_000_000)
    throw new MusterError('USAGE', `--uses takes a whole number from 1 to 1000000, got '${text.slice(0, 20)}'`);
  return Number(text);
}

/** `muster join-token create worker|manager [--ttl DUR] [--uses N] [--label k=v …] [-q]` */
export async function createTokenCommand(ctx: CliContext, roleText: string, flags: CreateFlags): Promise<number> {
  const request: ScopedTokenRequest = { role: parseRole(roleText) };
  if (flags.ttl !== undefined) {
    parseDuration(flags.ttl); // refuse a bad duration before connecting
    request.ttl = flags.ttl;
  }
  const uses = parseUses(flags.uses);
  if (uses !== undefined) request.uses = uses;
  if (flags.label !== undefined && flags.label.length > 0) request.labels = parseLabels(flags.label);
  return withConnection(ctx, flags, async ({ client }) => {
    const created = await client.call('createScopedToken', { body: request });
    if (flags.quiet === true) {
      ctx.stdout.write(`${created.token}\n`);
      return 0;
    }
    const limits = [
      created.expiresAt === undefined ? 'never expires' : `expires ${created.expiresAt}`,
      created.uses === undefined ? 'unlimited uses' : `${created.uses} use${created.uses === 1 ? '' : 's'}`,
      ...Object.entries(created.labels).map(([k, v]) => `label ${k}=${v}`),
    ];
    ctx.stdout.write(`Created ${created.role} join token ${created.id} (${limits.join(', ')}). It is shown only this once.\n\n`);
    ctx.stdout.write(joinInstructions(created.role, created.token, created.managerAddr));
    return 0;
  });
}

/** The columns of `join-token ls`, by their template names. */
function tokenColumns(now: number): Record<string, ListField<ScopedTokenView>> {
  return {
    ID: { header: 'ID', value: (t) => t.id },
    Role: { header: 'ROLE', value: (t) => t.role },
    Status: { header: 'STATUS', value: (t) => t.status },
    UsesLeft: { header: 'USES LEFT', value: (t) => (t.usesLeft === undefined ? 'unlimited' : `${t.usesLeft}/${t.uses ?? t.usesLeft}`) },
    Expires: { header: 'EXPIRES', value: (t) => (t.expiresAt === undefined ? 'never' : relativeTime(Date.parse(t.expiresAt), now)) },
    Labels: { header: 'LABELS', value: (t) => t.labels },
  };
}

/** What `join-token ls --format` templates may name: the table's columns, then the JSON fields (`.CreatedAt`, `.ExpiresAt`…). */
function tokenFields(now: number): ListFields<ScopedTokenView> {
  return listFields(tokenColumns(now), Object.keys(ScopedTokenView.properties));
}

/** `muster join-token ls [-q] [--format table|json|TEMPLATE]` */
export async function listTokensCommand(ctx: CliContext, flags: ConnectFlags & { quiet?: boolean; format?: string }): Promise<number> {
  const now = ctx.clock.now();
  const format = parseListFormat(flags.format, tokenFields(now));
  return withConnection(ctx, flags, async ({ client }) => {
    const { tokens } = await client.call('scopedTokens');
    if (flags.quiet === true) {
      ctx.stdout.write(tokens.map((t) => `${t.id}\n`).join(''));
      return 0;
    }
    const columns = Object.values(tokenColumns(now));
    const printer = listPrinter(format, () =>
      pagedTablePrinter(
        columns.map((c) => c.header),
        (t: ScopedTokenView) => columns.map((c) => listText(c.value(t))),
      ),
    );
    ctx.stdout.write(printer.page(tokens) + printer.end());
    return 0;
  });
}

/** `muster join-token rm ID…` */
export async function removeTokensCommand(ctx: CliContext, ids: string[], flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    for (const id of ids) {
      await client.call('removeScopedToken', { params: { id: id } });
      ctx.stdout.write(`${id}\n`);
    }
    return 0;
  });
}

/** Registers join-token and its subcommands. */
export function registerJoinToken(program: Command, ctx: CliContext, done: Done): void {
  const group = withConnectFlags(
    program
      .command('join-token')
      .description('show or rotate the join token for a role; create, list and remove scoped tokens')
      .usage('[options] worker|manager\n       muster join-token create|ls|rm …')
      .argument('[role]', 'worker or manager')
      .option('-q, --quiet', 'print the token only')
      .option('--rotate', 'replace the token; the old one is refused from then on')
      .enablePositionalOptions(),
  ).action(
    act(done)(async (role: string | undefined, options: Record<string, unknown>) => {
      if (role === undefined)
        throw new MusterError('USAGE', 'join-token needs a role or a subcommand', { hint: 'muster join-token worker, or muster join-token create|ls|rm' });
      return joinTokenCommand(ctx, role, { ...connectFlags(options), quiet: options.quiet === true, rotate: options.rotate === true });
    }),
  );
  withConnectFlags(
    group
      .command('create')
      .description('create an extra join token with a lifetime, a use count and labels')
      .argument('<role>', 'worker or manager')
      .option('--ttl <duration>', "refused after this long ('30m', '24h', '7d'); never expires by default")
      .option('--uses <n>', 'refused after this many joins; unlimited by default')
      .option('--label <key=value>', "a label every node that joins with it gets (repeatable; wins over the node's own)", collect, [])
      .option('-q, --quiet', 'print the token only'),
  ).action(
    act(done)((role: string, options: Record<string, unknown>) =>
      createTokenCommand(ctx, role, {
        ...connectFlags(options),
        ...(typeof options.ttl === 'string' ? { ttl: options.ttl } : {}),
        ...(typeof options.uses === 'string' ? { uses: options.uses } : {}),
        label: options.label as string[],
        quiet: options.quiet === true,
      }),
    ),
  );
  withConnectFlags(
    group
      .command('ls')
      .description('list the scoped join tokens (never their secrets)')
      .option('-q, --quiet', 'print the IDs only')
      .option('--format <format>', formatHelp(tokenFields(0))),
  ).action(
    act(done)((options: Record<string, unknown>) =>
      listTokensCommand(ctx, {
        ...connectFlags(options),
        quiet: options.quiet === true,
        ...(typeof options.format === 'string' ? { format: options.format } : {}),
      }),
    ),
  );
  withConnectFlags(
    group.command('rm').description('remove scoped join tokens: they are refused from then on').argument('<id...>', 'token IDs as join-token ls shows them'),
  ).action(act(done)((ids: string[], options: Record<string, unknown>) => removeTokensCommand(ctx, ids, connectFlags(options))));
}
