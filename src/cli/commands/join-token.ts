/** `muster join-token [-q] [--rotate] worker|manager`: show or rotate a join token. */
import type { Command } from 'commander';
import { MusterError } from '../../core/errors.js';
import type { NodeRole } from '../../core/roles.js';
import { withConnection, type ConnectFlags } from '../connect.js';
import type { CliContext } from '../context.js';
import { joinInstructions } from '../instructions.js';
import { act, connectFlags, withConnectFlags, type Done } from '../options.js';

/** A role named on the command line. */
export function parseRole(text: string): NodeRole {
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

/** Registers join-token. */
export function registerJoinToken(program: Command, ctx: CliContext, done: Done): void {
  withConnectFlags(
    program
      .command('join-token')
      .description('show or rotate the join token for a role')
      .argument('<role>', 'worker or manager')
      .option('-q, --quiet', 'print the token only')
      .option('--rotate', 'replace the token; the old one is refused from then on'),
  ).action(
    act(done)((role: string, options: Record<string, unknown>) => joinTokenCommand(ctx, role, { ...connectFlags(options), quiet: options.quiet === true, rotate: options.rotate === true })),
  );
}
