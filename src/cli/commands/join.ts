/**
 * `muster join`: join a cluster with a join token, then keep this node's
 * certificate fresh (and, joined with the manager token on a shared store,
 * serve as a manager). The token can come from the command line, a file,
 * MUSTER_TOKEN or standard input ('-'); it is never kept in the running
 * process's arguments.
 */
import { readFile, rm } from 'node:fs/promises';
import type { Command } from 'commander';
import { DEFAULT_PORT, formatHostPort, parseHostPort } from '../../core/address.js';
import { MusterError } from '../../core/errors.js';
import { writeManagerFiles } from '../../config/manager-files.js';
import { memberAddrs } from '../../store/managed-etcd.js';
import { specFromBundle, type LocalMember } from '../../node/open-store.js';
import { checkDataDirOwner } from '../../config/private-paths.js';
import type { DataDirLayout } from '../../config/paths.js';
import { joinCluster } from '../../agent/join.js';
import { advertiseFor } from '../../node/advertise.js';
import { checkBindable } from '../../node/bind-check.js';
import type { CliContext } from '../context.js';
import { lockDataDir, type DataDirLock } from '../../node/data-dir-lock.js';
import { clearForRejoin } from '../../node/node-files.js';
import { paint } from '../output.js';
import { act, collect, logFormatOption, logLevelOption, parseLabels, withManagerOptions, type Done } from '../options.js';
import { DEFAULT_LISTEN_ADDR, daemonLogger, serveNode } from '../serve.js';
import { layoutFor, readEnv } from '../settings.js';
import { readAll } from '../stdin.js';

/** Flags of `muster join`. */
export interface JoinFlags {
  token?: string;
  tokenFile?: string;
  dataDir?: string;
  label?: string[];
  listenAddr?: string;
  auditLog?: string;
  metricsAddr?: string;
  unlockKeyFile?: string;
  advertiseAddr?: string;
  logLevel?: string;
  logFormat?: string;
  /** Replace a node this data dir holds, once it is out of the cluster (removed, left, or a worker expired past the grace). */
  force?: boolean;
  /** A manager of a managed store: where its etcd member serves clients and peers, and which etcd runs it. */
  etcdClientAddr?: string;
  etcdPeerAddr?: string;
  etcdBinary?: string;
}

/** The token and the manager address from the arguments, --token, --token-file, MUSTER_TOKEN or standard input. */
async function tokenAndAddress(ctx: CliContext, positional: string[], flags: JoinFlags): Promise<{ token: string; managerAddr: string }> {
  const usage = new MusterError('USAGE', 'join needs a token and a manager address', {
    hint: 'muster join --token-file FILE HOST:PORT (or MUSTER_TOKEN=… muster join HOST:PORT, or muster join - HOST:PORT with the token on standard input)',
  });
  const sources = [flags.token, flags.tokenFile].filter((x) => x !== undefined).length;
  if (sources > 1) throw new MusterError('USAGE', 'give the token once: --token or --token-file', { hint: usage.hint });
  let tokenText: string | undefined;
  let rest = positional;
  if (flags.token !== undefined) tokenText = flags.token;
  else if (flags.tokenFile !== undefined) {
    try {
      tokenText = await readFile(flags.tokenFile, 'utf8');
    } catch {
      throw new MusterError('USAGE', `cannot read the token file ${flags.tokenFile}`);
    }
  } else if (positional.length === 2) {
    tokenText = positional[0];
    rest = positional.slice(1);
  } else tokenText = readEnv(ctx).token;
  if (tokenText === '-') {
    if (ctx.stdin === undefined) throw usage;
    tokenText = await readAll(ctx.stdin);
  }
  const managerAddr = rest[0];
  if (tokenText === undefined || managerAddr === undefined || rest.length !== 1) throw usage;
  return { token: tokenText.trim(), managerAddr };
}

/** `muster join`: join, then keep the node's identity fresh. */
export async function joinCommand(ctx: CliContext, positional: string[], flags: JoinFlags): Promise<number> {
  const { token, managerAddr } = await tokenAndAddress(ctx, positional, flags);
  ctx.hideArguments?.(['join', '<token hidden>', managerAddr]);
  const layout = layoutFor(ctx, flags);
  await checkDataDirOwner(layout, ctx.uid);
  // Held until this node stops: --force never clears the folder of a node that runs, and no second daemon starts on it.
  const dirLock = await lockDataDir(layout);
  return joinHolding(ctx, { token, managerAddr, layout, flags, dirLock }).finally(() => dirLock.release());
}

/** The rest of `muster join`, holding the data dir's lock. */
async function joinHolding(
  ctx: CliContext,
  params: { token: string; managerAddr: string; layout: DataDirLayout; flags: JoinFlags; dirLock: DataDirLock },
): Promise<number> {
  const { token, managerAddr, layout, flags, dirLock } = params;
  const colour = readEnv(ctx).colour(ctx.stderr);
  if (flags.force === true) {
    const replacing = await clearForRejoin(layout, ctx.clock);
    if (replacing !== undefined) ctx.stderr.write(`${paint(replacing, 'dim', colour)}\n`);
  }
  const logger = daemonLogger(ctx, flags.logLevel, flags.logFormat);
  const listen = parseHostPort(flags.listenAddr ?? readEnv(ctx).listenAddr ?? DEFAULT_LISTEN_ADDR, DEFAULT_PORT);
  // Where this node would serve as a manager; without flags, the default route's address if there is one.
  let advertise;
  try {
    advertise = advertiseFor(flags.advertiseAddr, listen);
  } catch (error) {
    if (flags.advertiseAddr !== undefined || flags.listenAddr !== undefined) throw error;
  }
  // Should the token make this node a manager of a managed store: where its etcd member runs.
  const member: LocalMember | undefined =
    advertise === undefined
      ? undefined
      : {
          ...memberAddrs(advertise.host, { clientAddr: flags.etcdClientAddr, peerAddr: flags.etcdPeerAddr }),
          ...(flags.etcdBinary === undefined ? {} : { binary: flags.etcdBinary }),
        };
  const result = await joinCluster({
    token,
    managerAddr: formatHostPort(parseHostPort(managerAddr, DEFAULT_PORT)),
    layout,
    hostname: ctx.hostname,
    ...(flags.label === undefined || flags.label.length === 0 ? {} : { labels: parseLabels(flags.label) }),
    ...(advertise === undefined ? {} : { listenAddr: formatHostPort(listen), advertiseAddr: formatHostPort(advertise) }),
    ...(member === undefined
      ? {}
      : { storeMember: { clientAddr: member.clientAddr, peerAddr: member.peerAddr, ...(member.binary === undefined ? {} : { binary: member.binary }) } }),
    // A manager that joined and then cannot serve (a port in use) would leave a store member that never answers: check first.
    beforeManagerJoin: async () => {
      await checkBindable(listen);
      if (member !== undefined && (flags.etcdClientAddr !== undefined || flags.etcdPeerAddr !== undefined)) {
        await checkBindable(parseHostPort(member.listenClientAddr));
        await checkBindable(parseHostPort(member.listenPeerAddr));
      }
    },
    clock: ctx.clock,
    random: ctx.random,
    logger,
    progress: (line) => ctx.stderr.write(`${paint(line, 'dim', colour)}\n`),
  });
  if (result.bundle !== undefined) {
    if (result.bundle.member !== undefined && member === undefined)
      throw new MusterError('USAGE', 'a manager of this cluster runs an etcd member, and this node has no address for it', {
        hint: 'join with --advertise-addr HOST',
      });
    await writeManagerFiles(layout, { store: specFromBundle(result.bundle, member), dataKey: Buffer.from(result.bundle.dataKey, 'base64') });
  }
  await rm(layout.leftJson, { force: true }); // a node again: what leave recorded is history
  ctx.stdout.write(
    `This node joined cluster ${result.state.clusterId} as a ${result.state.role} (node ID ${result.state.nodeId}).\n` +
      `Its certificate is in ${layout.certificatesDir} and is valid until ${new Date(result.notAfter).toISOString()}; it renews itself while 'muster' runs.\n`,
  );
  return serveNode(ctx, {
    layout,
    logLevel: flags.logLevel,
    logFormat: flags.logFormat,
    banner: false,
    auditLog: flags.auditLog,
    metricsAddr: flags.metricsAddr,
    unlockKeyFile: flags.unlockKeyFile,
    dirLock,
    ...(member === undefined ? {} : { localMember: member }),
  });
}

/** Registers join. */
export function registerJoin(program: Command, ctx: CliContext, done: Done): void {
  withManagerOptions(
    program
      .command('join')
      .description('join a cluster with a join token, then keep this node’s certificate fresh')
      .argument('[token]', "the join token, or '-' to read it from standard input (better: --token-file or MUSTER_TOKEN)")
      .argument('[manager-addr]', 'a manager address, host:port')
      .option('--token <token>', 'the join token')
      .option('--token-file <file>', 'read the join token from a file')
      .option('--data-dir <dir>', 'where this node keeps its key and certificate')
      .option('--label <key=value>', 'a node label (repeatable)', collect, [])
      .option('--listen-addr <host:port>', 'where this node listens when it serves as a manager (default 0.0.0.0:4377)')
      .option('--advertise-addr <host[:port]>', 'the address other nodes reach this manager on')
      .option('--force', 'replace a node this data dir holds (removed, left, or expired past the grace)')
      .option(
        '--etcd-client-addr <host:port>',
        'a manager of a managed store: where its etcd member serves the managers (default: the advertise host, port 2379)',
      )
      .option(
        '--etcd-peer-addr <host:port>',
        'a manager of a managed store: where its etcd member talks to the other members (default: the advertise host, port 2380)',
      )
      .option('--etcd-binary <path>', "the etcd server a manager of a managed store runs (default: 'etcd' on the PATH)")
      .addOption(logLevelOption())
      .addOption(logFormatOption()),
  ).action(
    act(done)((first: string | undefined, second: string | undefined, options: JoinFlags) =>
      joinCommand(
        ctx,
        [first, second].filter((x): x is string => x !== undefined),
        options,
      ),
    ),
  );
}
