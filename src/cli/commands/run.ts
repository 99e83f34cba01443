/** `muster run`: restart the node (manager or worker) in a data dir, in the foreground. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { act, logFormatOption, logLevelOption, withManagerOptions, type Done } from '../options.js';
import { serveNode } from '../serve.js';
import { layoutFor } from '../settings.js';

/** Flags of `muster run`. */
export interface RunFlags {
  dataDir?: string;
  listenAddr?: string;
  advertiseAddr?: string;
  logLevel?: string;
  logFormat?: string;
  auditLog?: string;
  metricsAddr?: string;
  unlockKeyFile?: string;
}

/** `muster run`: restart whatever this data dir holds. */
export function runCommand(ctx: CliContext, flags: RunFlags): Promise<number> {
  return serveNode(ctx, { layout: layoutFor(ctx, flags), logLevel: flags.logLevel, logFormat: flags.logFormat, banner: false, listenAddr: flags.listenAddr, advertiseAddr: flags.advertiseAddr, auditLog: flags.auditLog, metricsAddr: flags.metricsAddr, unlockKeyFile: flags.unlockKeyFile });
}

/** Registers run. */
export function registerRun(program: Command, ctx: CliContext, done: Done): void {
  withManagerOptions(program
    .command('run')
    .description('restart the node (manager or worker) in a data dir')
    .option('--data-dir <dir>', 'the node data dir')
    .option('--listen-addr <host:port>', 'where a manager listens (default: $MUSTER_LISTEN_ADDR, else as before)')
    .option('--advertise-addr <host[:port]>', 'the address nodes reach this manager on (default: as before)')
    .addOption(logLevelOption()).addOption(logFormatOption()))
    .action(act(done)((options: RunFlags) => runCommand(ctx, options)));
}
