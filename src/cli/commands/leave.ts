/**
 * `muster leave [--force]`: the node leaves the cluster and deletes its key
 * and certificate. It also works on a node the cluster already removed, or
 * whose certificate expired past the grace: it clears the node's files and
 * says whether the managers were told. left.json stays behind to say so
 * (see node-files.ts).
 */
import type { Command } from 'commander';
import { pathExists } from '../../core/atomic-file.js';
import { MusterError, isMusterError } from '../../core/errors.js';
import { connect, type ConnectFlags } from '../connect.js';
import type { CliContext } from '../context.js';
import { clearNodeFiles, markLeaving, unmarkLeaving, writeLeftRecord, type LeftRecord } from '../../node/node-files.js';
import { act, connectFlags, withConnectFlags, type Done } from '../options.js';

/** `muster leave [--force]` */
async function leaveCommand(ctx: CliContext, flags: ConnectFlags & { force?: boolean }): Promise<number> {
  const connection = await connect(ctx, { ...flags, host: '' });
  try {
    const local = connection.local;
    if (local === undefined) throw new MusterError('NOT_INITIALISED', 'leave runs on the node that leaves');
    if (local.state.role === 'manager' && flags.force !== true) {
      throw new MusterError('LEAVE_MANAGER', `this node (${local.state.nodeId}) is a manager`, { hint: "use 'muster leave --force' to leave anyway" });
    }
    let told = 'the managers marked it removed';
    let how: LeftRecord['how'] = 'left';
    // Before the managers hear of it: the node's daemon, told a moment later that it was removed, then stops as one that left (exit 0).
    await markLeaving(local.layout, local.state, ctx.clock);
    try {
      // The managers refuse the last serving manager's leave: nothing below runs for it.
      await connection.client.call('leave');
    } catch (error) {
      // Already out of the cluster: there is nothing to tell the managers, only files to clear.
      if (isMusterError(error, 'NODE_REMOVED')) [told, how] = ['the cluster had already removed it', 'removed'];
      else if (isMusterError(error, 'CERT_EXPIRED'))
        [told, how] = [`its certificate expired, so the managers were not told (remove it there with 'muster node rm -f ${local.state.nodeId}')`, 'expired'];
      else {
        await unmarkLeaving(local.layout);
        throw error;
      }
    }
    // First the record, then the files: a leave cut short still says this node is out (join --force trusts it).
    await writeLeftRecord(local.layout, { state: local.state, how, clock: ctx.clock });
    await clearNodeFiles(local.layout);
    // A manager's audit trail stays: it is the record of what this manager did, not part of its identity.
    const kept = (await pathExists(local.layout.auditLog)) ? `; its audit trail stays in ${local.layout.auditLog}` : '';
    ctx.stdout.write(
      `Node ${local.state.nodeId} left the cluster (${told}); its key, certificates and node.json were deleted from ${local.layout.dataDir}${kept}.\n`,
    );
    return 0;
  } finally {
    await connection.client.close();
  }
}

/** Registers leave. */
export function registerLeave(program: Command, ctx: CliContext, done: Done): void {
  withConnectFlags(
    program
      .command('leave')
      .description('leave the cluster and delete this node’s key and certificate')
      .option('-f, --force', 'leave even if this node is a manager'),
  ).action(act(done)((options: Record<string, unknown>) => leaveCommand(ctx, { ...connectFlags(options), force: options.force === true })));
}
