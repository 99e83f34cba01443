/**
 * Autolock's commands, as Docker's: `muster unlock-key [-q] [--rotate]`
 * shows or replaces the unlock key; `muster unlock` unlocks the manager on
 * this host (its local socket), with the key from --unlock-key-file,
 * MUSTER_UNLOCK_KEY or standard input, never an argument.
 */
import type { Command } from 'commander';
import { pathExists } from '../../core/atomic-file.js';
import { sleep } from '../../core/backoff.js';
import { MusterError, isMusterError } from '../../core/errors.js';
import { formatUnlockKey } from '../../token/unlock-key.js';
import { readDataKeyFile } from '../../config/manager-files.js';
import type { DataDirLayout } from '../../config/paths.js';
import { localSocketClient, withConnection, type ConnectFlags } from '../connect.js';
import type { CliContext } from '../context.js';
import { unlockKeyInstructions } from '../instructions.js';
import { act, connectFlags, withConnectFlags, type Done } from '../options.js';
import { layoutFor } from '../settings.js';
import { readUnlockKey } from '../unlock-key-input.js';

/** `muster unlock-key [-q] [--rotate]` */
export async function unlockKeyCommand(ctx: CliContext, flags: ConnectFlags & { quiet?: boolean; rotate?: boolean }): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    const view = flags.rotate === true ? await client.call('rotateUnlockKey') : await client.call('unlockKey');
    if (flags.quiet === true) {
      ctx.stdout.write(`${view.unlockKey}\n`);
      return 0;
    }
    if (flags.rotate === true) {
      ctx.stdout.write(
        'Successfully rotated manager unlock key.\n\n' +
          'The previous key still unlocks a manager that was down during the rotation (until it has been\n' +
          'unlocked once), and any manager for the next 10 minutes.\n\n',
      );
    }
    ctx.stdout.write(unlockKeyInstructions(view.unlockKey));
    return 0;
  });
}

/** `muster unlock [--data-dir D] [--unlock-key-file F]` */
export async function unlockCommand(ctx: CliContext, flags: { dataDir?: string; unlockKeyFile?: string }): Promise<number> {
  const layout = layoutFor(ctx, flags);
  const file = await readDataKeyFile(layout).catch((error: unknown) => {
    if (isMusterError(error, 'STATE_CORRUPT'))
      throw new MusterError('NOT_INITIALISED', `${layout.dataDir} holds no manager`, { hint: 'run unlock on the manager host, with its --data-dir' });
    throw error;
  });
  if (!file.locked) throw new MusterError('AUTOLOCK_OFF', `the manager in ${layout.dataDir} is not locked: autolock is off on it`);
  if (!(await pathExists(layout.controlSocket))) {
    throw new MusterError('MANAGER_UNREACHABLE', `no manager runs on ${layout.dataDir}`, {
      hint: "start it with 'muster run' (it starts locked), or give it the key at start with --unlock-key-file",
    });
  }
  const key = await readUnlockKey(ctx, flags.unlockKeyFile, { stdinFallback: true });
  if (key === undefined) throw new MusterError('USAGE', 'no unlock key given');
  const client = localSocketClient(layout, 30_000);
  try {
    await client.call('unlock', { body: { unlockKey: formatUnlockKey(key) } });
  } catch (error) {
    if (isMusterError(error, 'NOT_LOCKED')) throw new MusterError('NOT_LOCKED', 'this manager is not locked: it serves already');
    throw error;
  } finally {
    await client.close();
  }
  await waitUntilServing(ctx, layout);
  ctx.stdout.write('Manager unlocked: it serves.\n');
  return 0;
}

/** How long an unlocked manager may take to load its cluster and listen. */
const SERVING_TIMEOUT_MS = 60_000;

/**
 * Waits until the unlocked manager accepts connections: it takes the key,
 * closes its locked listeners, loads the cluster and listens, seconds later.
 * Its control socket answers as unlocked only then (the manager binds it
 * after its port).
 */
async function waitUntilServing(ctx: CliContext, layout: DataDirLayout): Promise<void> {
  const deadline = ctx.clock.now() + SERVING_TIMEOUT_MS;
  for (;;) {
    const client = localSocketClient(layout, 5_000);
    try {
      if ((await client.health()).locked !== true) return;
    } catch {
      // Between the locked listeners and the manager's: nothing answers for a moment.
    } finally {
      await client.close();
    }
    if (ctx.clock.now() > deadline) {
      throw new MusterError('MANAGER_UNREACHABLE', `the manager took the unlock key but does not serve after ${SERVING_TIMEOUT_MS / 1000}s`, {
        hint: "see the manager's log (journalctl -u muster-manager)",
      });
    }
    await sleep(ctx.clock, 100);
  }
}

/** Registers unlock and unlock-key. */
export function registerAutolock(program: Command, ctx: CliContext, done: Done): void {
  withConnectFlags(
    program
      .command('unlock-key')
      .description('show the unlock key of an autolocked cluster, or replace it')
      .option('-q, --quiet', 'print the key only')
      .option('--rotate', 'replace the key; managers rewrap their data key under the new one'),
  ).action(
    act(done)((options: Record<string, unknown>) =>
      unlockKeyCommand(ctx, { ...connectFlags(options), quiet: options.quiet === true, rotate: options.rotate === true }),
    ),
  );
  program
    .command('unlock')
    .description('unlock the manager on this host after a restart (the key from standard input, --unlock-key-file or $MUSTER_UNLOCK_KEY)')
    .option('--data-dir <dir>', 'the manager data dir')
    .option('--unlock-key-file <file>', "a file holding the unlock key, or '-' for standard input")
    .action(act(done)((options: { dataDir?: string; unlockKeyFile?: string }) => unlockCommand(ctx, options)));
}
