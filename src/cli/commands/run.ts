/**
 * `muster run`: the node in a data dir, in the foreground: what systemd
 * runs. With a config file (`/etc/muster/config.yaml`, `--config`,
 * MUSTER_CONFIG) it also sets the node up, idempotently: an empty data dir
 * with `init:` founds a cluster, one with `join:` joins with the token file;
 * a data dir that holds a node runs it. So putting a node under systemd is:
 * write the config (and the token file), `systemctl enable --now`.
 */
import type { Command } from 'commander';
import { readNodeState } from '../../agent/node-state.js';
import { pathExists } from '../../core/atomic-file.js';
import { MusterError } from '../../core/errors.js';
import { DEFAULT_CONFIG_FILE, readConfigFile, type ConfigFile } from '../config-file.js';
import type { CliContext } from '../context.js';
import { act, logFormatOption, logLevelOption, withManagerOptions, type Done } from '../options.js';
import { serveNode } from '../serve.js';
import { layoutFor, readEnv } from '../settings.js';
/** The flags run passes on to init (a part of init's). */
interface SetUpInitFlags extends Omit<RunFlags, 'config'> {
  store?: string;
  certExpiry?: string;
  autolock?: boolean;
  caCert?: string;
  caKey?: string;
  externalCa?: string[];
  etcdClientAddr?: string;
  etcdPeerAddr?: string;
  etcdBinary?: string;
}

/** The flags run passes on to join (a part of join's). */
interface SetUpJoinFlags extends Omit<RunFlags, 'config'> {
  tokenFile: string;
  label?: string[];
  etcdClientAddr?: string;
  etcdPeerAddr?: string;
  etcdBinary?: string;
}

/** What run sets a node up with: init's and join's own commands (program.ts hands them in: command files do not import each other). */
export interface SetUp {
  init(ctx: CliContext, flags: SetUpInitFlags): Promise<number>;
  join(ctx: CliContext, positional: string[], flags: SetUpJoinFlags): Promise<number>;
}

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
  config?: string;
}

/** The file's settings under the flags and MUSTER_* variables (which win). */
function mergeConfig(ctx: CliContext, flags: RunFlags, config: ConfigFile): RunFlags {
  const env = readEnv(ctx);
  const pick = (flag: string | undefined, fromEnv: string | undefined, fromFile: string | undefined): string | undefined =>
    flag ?? (fromEnv === undefined ? fromFile : undefined);
  const merged: RunFlags = { ...flags };
  const set = (key: keyof RunFlags, value: string | undefined): void => {
    if (value !== undefined) merged[key] = value;
  };
  set('dataDir', pick(flags.dataDir, env.dataDir, config['data-dir']));
  set('listenAddr', pick(flags.listenAddr, env.listenAddr, config['listen-addr']));
  set('logLevel', pick(flags.logLevel, env.explicitLogLevel, config['log-level']));
  set('logFormat', pick(flags.logFormat, env.logFormat, config['log-format']));
  set('advertiseAddr', flags.advertiseAddr ?? config['advertise-addr']);
  set('auditLog', flags.auditLog ?? config['audit-log']);
  set('metricsAddr', flags.metricsAddr ?? config['metrics-addr']);
  set('unlockKeyFile', flags.unlockKeyFile ?? config['unlock-key-file']);
  return merged;
}

/** Sets the node up from the config when the data dir holds none, then runs it (or runs what it holds). */
export async function runCommand(ctx: CliContext, flags: RunFlags, setUp: SetUp): Promise<number> {
  const named = flags.config ?? readEnv(ctx).configFile;
  const config = await readConfigFile(named ?? DEFAULT_CONFIG_FILE, named === undefined);
  const settings = config === undefined ? flags : mergeConfig(ctx, flags, config);
  const layout = layoutFor(ctx, settings);
  const { config: _config, ...common } = settings;
  if (config !== undefined && (await readNodeState(layout.nodeJson)) === undefined) {
    // A node that left on purpose is not joined again behind the operator's back at the next boot.
    if (await pathExists(layout.leftJson)) {
      throw new MusterError(
        'NOT_INITIALISED',
        `${layout.dataDir} holds a node that left its cluster ('muster leave'); the config's init: or join: is not run again`,
        {
          hint: `join again with 'muster join --force --token-file FILE ADDR --data-dir ${layout.dataDir}', or delete ${layout.leftJson} to let the config set the node up`,
          fatal: true,
        },
      );
    }
    if (config.init !== undefined) {
      const init = config.init;
      return setUp.init(ctx, {
        ...common,
        ...(init.store === undefined ? {} : { store: init.store }),
        ...(init['cert-expiry'] === undefined ? {} : { certExpiry: init['cert-expiry'] }),
        ...(init.autolock === true ? { autolock: true } : {}),
        ...(init['ca-cert'] === undefined ? {} : { caCert: init['ca-cert'] }),
        ...(init['ca-key'] === undefined ? {} : { caKey: init['ca-key'] }),
        ...(init['external-ca'] === undefined ? {} : { externalCa: init['external-ca'] }),
        ...(init['etcd-client-addr'] === undefined ? {} : { etcdClientAddr: init['etcd-client-addr'] }),
        ...(init['etcd-peer-addr'] === undefined ? {} : { etcdPeerAddr: init['etcd-peer-addr'] }),
        ...(init['etcd-binary'] === undefined ? {} : { etcdBinary: init['etcd-binary'] }),
      });
    }
    if (config.join !== undefined) {
      const join = config.join;
      return setUp.join(ctx, [join.manager], {
        ...common,
        tokenFile: join['token-file'],
        ...(join.labels === undefined ? {} : { label: Object.entries(join.labels).map(([k, v]) => `${k}=${v}`) }),
        ...(join['etcd-client-addr'] === undefined ? {} : { etcdClientAddr: join['etcd-client-addr'] }),
        ...(join['etcd-peer-addr'] === undefined ? {} : { etcdPeerAddr: join['etcd-peer-addr'] }),
        ...(join['etcd-binary'] === undefined ? {} : { etcdBinary: join['etcd-binary'] }),
      });
    }
  }
  return serveNode(ctx, {
    layout,
    logLevel: common.logLevel,
    logFormat: common.logFormat,
    banner: false,
    listenAddr: common.listenAddr,
    advertiseAddr: common.advertiseAddr,
    auditLog: common.auditLog,
    metricsAddr: common.metricsAddr,
    unlockKeyFile: common.unlockKeyFile,
  });
}

/** Registers run. */
export function registerRun(program: Command, ctx: CliContext, done: Done, setUp: SetUp): void {
  withManagerOptions(
    program
      .command('run')
      .description('run the node in a data dir; with a config file, found or join first when the data dir holds no node')
      .option('--data-dir <dir>', 'the node data dir')
      .option('--listen-addr <host:port>', 'where a manager listens (default: $MUSTER_LISTEN_ADDR, else as before)')
      .option('--advertise-addr <host[:port]>', 'the address nodes reach this manager on (default: as before)')
      .option('--config <file>', `settings, and init: or join: for an empty data dir (default: $MUSTER_CONFIG, else ${DEFAULT_CONFIG_FILE} if it exists)`)
      .addOption(logLevelOption())
      .addOption(logFormatOption()),
  ).action(act(done)((options: RunFlags) => runCommand(ctx, options, setUp)));
}
