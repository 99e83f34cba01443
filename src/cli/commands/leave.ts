/** `muster leave [--force]`: the node leaves the cluster and deletes its key and certificate. */
import { rm } from 'node:fs/promises';
import type { Command } from 'commander';
import { MusterError } from '../../core/errors.js';
import { readStoreSpec } from '../../config/manager-files.js';
import { KeyStore } from '../../agent/key-store.js';
import { connect, type ConnectFlags } from '../connect.js';
import type { CliContext } from '../context.js';
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
    // The managers refuse the last serving manager's leave: nothing below runs for it.
    await connection.client.leave();
    await new KeyStore(local.layout).remove();
    await rm(local.layout.nodeJson, { force: true });
    // A manager's own files go; shared state stays where it is (etcd), and the
    // embedded store is never deleted here (its manager is always the last one).
    const spec = await readStoreSpec(local.layout);
    if (spec?.kind === 'etcd') {
      await rm(local.layout.storeJson, { force: true });
      await rm(local.layout.dataKey, { force: true });
    }
    ctx.stdout.write(`Node ${local.state.nodeId} left the cluster; its certificate and key were deleted from ${local.layout.dataDir}.\n`);
    return 0;
  } finally {
    await connection.client.close();
  }
}

/** Registers leave. */
export function registerLeave(program: Command, ctx: CliContext, done: Done): void {
  withConnectFlags(program.command('leave').description('leave the cluster and delete this node’s key and certificate').option('-f, --force', 'leave even if this node is a manager')).action(
    act(done)((options: Record<string, unknown>) => leaveCommand(ctx, { ...connectFlags(options), force: options.force === true })),
  );
}
