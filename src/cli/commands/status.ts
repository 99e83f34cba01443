/**
 * `muster status`: what `docker info` says of the Swarm: this node, its
 * cluster, its certificate and when it renews, the managers it knows and
 * which answer now, where the data dir and the store are. Read from the data
 * dir, then from the managers where they can be reached.
 */
import { X509Certificate } from 'node:crypto';
import type { Command } from 'commander';
import { AGENT_ROUTES } from '../../agent/agent-socket.js';
import { callAgent } from '../agent-client.js';
import { formatDuration, iso, parseDuration } from '../../core/duration.js';
import { DEFAULT_RENEW_GRACE_MS } from '../../api/routes.js';
import { MusterError, isMusterError } from '../../core/errors.js';
import { readDataKeyFile, readStoreSpec, type StoreSpec } from '../../config/manager-files.js';
import type { DataDirLayout } from '../../config/paths.js';
import { memberAnswers } from '../../store/managed-etcd.js';
import { pathExists } from '../../core/atomic-file.js';
import { ApiClient } from '../../api/client.js';
import type { SelfResponse } from '../../api/schemas.js';
import { KeyStore } from '../../agent/key-store.js';
import { readNodeState } from '../../agent/node-state.js';
import { connect, localSocketClient, parseHostTarget, type ConnectFlags } from '../connect.js';
import { localManagers } from '../../agent/node-state.js';
import type { CliContext } from '../context.js';
import { formatTable, relativeTime } from '../output.js';
import { act, type Done } from '../options.js';
import { layoutFor, readEnv } from '../settings.js';

/** Flags of `muster status`. */
interface StatusFlags extends ConnectFlags {
  format?: string;
}

/** Exit status of a status run in which no manager answered (docker info's, when the daemon is down). */
const NO_MANAGER = 1;

function checkFormat(format: string | undefined): 'table' | 'json' {
  if (format === undefined || format === 'table') return 'table';
  if (format === 'json') return 'json';
  throw new MusterError('USAGE', `unknown --format ${format.slice(0, 40)}`, { hint: 'use --format json, or leave it out for the table' });
}

/**
 * `muster status --host H` (or MUSTER_HOST): one manager as a client sees it,
 * like `docker -H H info`: whether it answers, its store and, with a
 * certificate it accepts, the cluster's facts.
 */
async function remoteStatus(ctx: CliContext, flags: StatusFlags, format: 'table' | 'json'): Promise<number> {
  const target = parseHostTarget(flags.host ?? readEnv(ctx).host ?? '');
  const where = target.kind === 'tcp' ? target.addr : `unix://${target.path}`;
  let connection: Awaited<ReturnType<typeof connect>> | undefined;
  const facts: Record<string, unknown> = { manager: where };
  try {
    connection = await connect(ctx, flags);
    const health = await connection.client.health();
    facts.state = health.locked === true ? 'locked' : 'reachable';
    facts.store = health.store ?? (health.locked === true ? 'locked' : 'unknown');
    if (health.locked !== true) {
      const cluster = await connection.client.call('cluster').catch((error: unknown) => (isMusterError(error) ? error : Promise.reject(error)));
      if (cluster instanceof MusterError) facts.cluster = `${cluster.code}: ${cluster.message}`;
      else
        Object.assign(facts, {
          clusterId: cluster.clusterId,
          certExpiry: cluster.certExpiry,
          renewGrace: cluster.renewGrace,
          rootDigest: cluster.ca.digest,
          rootNotAfter: cluster.ca.notAfter,
          storeKind: cluster.store,
        });
    }
  } catch (error) {
    if (!isMusterError(error) || !['MANAGER_UNREACHABLE', 'MANAGER_ERROR', 'NOT_A_MANAGER'].includes(error.code)) throw error;
    facts.state = `unreachable (${error.code})`;
  } finally {
    await connection?.client.close();
  }
  if (format === 'json') ctx.stdout.write(`${JSON.stringify(facts)}\n`);
  else {
    const rows = Object.entries(facts).map(([k, v]) => [k, String(v)] as const);
    const width = Math.max(...rows.map(([k]) => k.length)) + 2;
    ctx.stdout.write(rows.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}\n`).join(''));
  }
  return facts.state === 'reachable' || facts.state === 'locked' ? 0 : NO_MANAGER;
}

/** `muster status [--data-dir D] [--host H] [--format json]`: exits 1 when no manager answers. */
async function statusCommand(ctx: CliContext, flags: StatusFlags): Promise<number> {
  const format = checkFormat(flags.format);
  if ((flags.host ?? readEnv(ctx).host ?? '') !== '') return remoteStatus(ctx, flags, format);
  const layout = layoutFor(ctx, flags);
  const state = await readNodeState(layout.nodeJson);
  if (state === undefined)
    throw new MusterError('NOT_INITIALISED', `${layout.dataDir} holds no node`, { hint: "found a cluster with 'muster init' or join one with 'muster join'" });
  const keyStore = new KeyStore(layout);
  // Under autolock the key is sealed: the manager on this host is asked over its local socket, as itself.
  const sealed = await keyStore.keySealed();
  const pair = sealed ? await keyStore.loadPublic() : await keyStore.load();
  if (pair === undefined) throw new MusterError('STATE_CORRUPT', `${layout.dataDir} has node.json but no certificate`);
  const socketUp = sealed && (await pathExists(layout.controlSocket));
  const cert = new X509Certificate(pair.certPem);
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  const now = ctx.clock.now();
  const spec = await readStoreSpec(layout);

  // Ask each known manager whether it answers; the first that does says what the cluster thinks of this node.
  let self: SelfResponse | undefined;
  let selfError: MusterError | undefined;
  const reach: string[][] = [];
  for (const address of localManagers(state)) {
    const own = address === state.servingAddr;
    if (sealed && !(own && socketUp)) {
      reach.push([address, own ? 'not running' : "not checked (this node's key is sealed: autolock)"]);
      continue;
    }
    const keyPem = 'keyPem' in pair && typeof pair.keyPem === 'string' ? pair.keyPem : undefined;
    const client =
      keyPem === undefined
        ? localSocketClient(layout, 3_000)
        : new ApiClient({ managers: [address], tls: { rootPem: pair.rootPem, certPem: pair.certPem, keyPem }, timeoutMs: 3_000 });
    try {
      const health = await client.health();
      if (health.locked === true) {
        reach.push([address, `locked (run 'muster unlock'; ${health.unlockFailures ?? 0} wrong keys so far)`]);
        continue;
      }
      reach.push([address, health.store === 'ok' ? 'reachable' : 'reachable, store unavailable']);
      if (self === undefined && selfError === undefined) {
        try {
          self = await client.self();
        } catch (error) {
          if (!isMusterError(error)) throw error;
          selfError = error;
        }
      }
    } catch (error) {
      reach.push([address, `unreachable (${isMusterError(error) ? error.code : 'error'})`]);
    } finally {
      await client.close();
    }
  }

  // The cluster's grace comes with the node's record; a manager that answers but refuses this node's certificate does not say it.
  const reachable = reach.filter(([, r]) => r!.startsWith('reachable')).length;
  const graceMs = self === undefined ? DEFAULT_RENEW_GRACE_MS : parseDuration(self.renewGrace);
  const grace =
    self?.renewGrace ??
    `${formatDuration(DEFAULT_RENEW_GRACE_MS)} (the default; ${reachable === 0 ? 'no manager answered' : "the managers that answered refused this node's certificate"})`;
  const windowStart = notBefore + Math.floor((notAfter - notBefore) * 0.5);
  const windowEnd = notBefore + Math.floor((notAfter - notBefore) * 0.8);
  const certificate =
    now < notAfter
      ? `valid until ${iso(notAfter)} (${relativeTime(notAfter, now)})`
      : now <= notAfter + graceMs
        ? `expired ${iso(notAfter)} (${relativeTime(notAfter, now)}); it renews by itself within the renewal grace once 'muster run' runs`
        : `expired ${iso(notAfter)} (${relativeTime(notAfter, now)}), longer ago than the renewal grace: it cannot renew; clear the node with 'muster leave' and join again ('muster join --force --token-file FILE ADDR')`;
  const standing =
    selfError === undefined ? (self === undefined ? 'unknown (no manager answered)' : self.node.status) : `${selfError.code}: ${selfError.message}`;
  const rows: [string, string][] = [
    ['Node ID', state.nodeId],
    ['Role', state.servingAddr === undefined ? state.role : `${state.role} (serves on ${state.servingAddr} when running)`],
    ['Cluster ID', state.clusterId],
    ['Standing', standing],
    ['Data dir', layout.dataDir],
    ['Certificate', certificate],
    ['Renewal', `between ${iso(windowStart)} and ${iso(windowEnd)} (50–80% of the lifetime), with a fresh key`],
    ['Renewal grace', `${grace} after expiry`],
    ['Managers', `${reach.length} known, ${reachable} reachable`],
  ];
  if (spec !== undefined) rows.push(['Store', await storeLine(spec, layout, pair)]);
  if (spec !== undefined) {
    const wrapped = (await readDataKeyFile(layout)).locked;
    rows.push([
      'Autolock',
      wrapped
        ? reach.some(([, r]) => r!.startsWith('locked'))
          ? "on: this manager is locked; run 'muster unlock'"
          : 'on: keys sealed under the unlock key at rest'
        : 'off',
    ]);
  }
  // The running node's service certificates (muster cert), when it runs: how many, and how their hooks fare.
  if (await pathExists(layout.agentSocket)) {
    const answer = await callAgent(layout.agentSocket, 'GET', AGENT_ROUTES.certificates, undefined, 3_000).catch(() => undefined);
    if (answer !== undefined) {
      const failing = (answer.certificates ?? []).filter((c) => c.hook.lastError !== undefined || c.issueError !== undefined).length;
      rows.push([
        'Service certs',
        `${answer.certificates?.length ?? 0} kept renewed, ${failing} failing; hook failures since the node started: ${answer.hookFailures ?? 0}`,
      ]);
    }
  }
  if (format === 'json') {
    const facts = Object.fromEntries(rows.map(([k, v]) => [k.toLowerCase().replace(/ (\w)/g, (_, c: string) => c.toUpperCase()), v]));
    ctx.stdout.write(
      `${JSON.stringify({ ...facts, managers: reach.map(([address, state]) => ({ address, state })), reachable, ...(selfError === undefined ? {} : { error: selfError.code }) })}\n`,
    );
  } else {
    const width = Math.max(...rows.map(([k]) => k.length)) + 2;
    ctx.stdout.write(rows.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}\n`).join(''));
    ctx.stdout.write(
      formatTable(
        ['  MANAGER', 'STATE'],
        reach.map(([a, r]) => [`  ${a}`, r!]),
      )
        .split('\n')
        .slice(1)
        .join('\n'),
    );
    if (selfError !== undefined && selfError.hint !== undefined) ctx.stdout.write(`\nhint: ${selfError.hint}\n`);
  }
  // As docker info does when its daemon is down: a script learns it from the exit status.
  return reach.some(([, r]) => r!.startsWith('reachable') || r!.startsWith('locked')) ? 0 : NO_MANAGER;
}

/** The store line: where it lives and, for a managed store, whether this manager's own etcd member answers. */
async function storeLine(spec: StoreSpec, layout: DataDirLayout, pair: { certPem: string; rootPem: string; keyPem?: string }): Promise<string> {
  if (spec.kind === 'level') return `level ${layout.dbDir}`;
  if (spec.kind === 'etcd') return `etcd ${spec.endpoints.join(',')}`;
  const where = `etcd member on ${spec.clientAddr} (peers ${spec.peerAddr}), data in ${layout.etcdDir}`;
  // Under autolock the key is sealed: the member's health is then the manager's to tell (node ls).
  if (pair.keyPem === undefined) return `managed: ${where}`;
  const answers = await memberAnswers([spec.clientAddr], { certPem: pair.certPem, keyPem: pair.keyPem, rootPem: pair.rootPem });
  return `managed: ${where}; ${answers ? 'the member answers' : 'the member does not answer'}`;
}

/** Registers status. */
export function registerStatus(program: Command, ctx: CliContext, done: Done): void {
  program
    .command('status')
    .description('this node, its cluster, its certificate and the managers it can reach (like docker info)')
    .option('--data-dir <dir>', 'the node data dir')
    .option('-H, --host <host>', 'ask this manager instead: HOST[:PORT], tcp://HOST[:PORT] or unix:///PATH (default: $MUSTER_HOST)')
    .option('--tls-cert <file>', 'client certificate for --host (default: $MUSTER_CERT_PATH/cert.pem)')
    .option('--tls-key <file>', 'client key for --host')
    .option('--tls-ca <file>', 'root CA for --host')
    .option('--format <format>', "'json': one JSON object")
    .action(act(done)((options: StatusFlags) => statusCommand(ctx, options)));
}
