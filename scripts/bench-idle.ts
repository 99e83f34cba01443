/**
 * npm run bench:idle — what a manager costs at rest, per connected node
 * (issue 20). N real nodes (joined with the token, real client
 * certificates) each hold one kept-alive connection and long-poll
 * `GET /v1/nodes/self?wait=30` on it, as agents do at the default heartbeat.
 * Measured on the manager's process (/proc): CPU per node per minute over a
 * minute of rest, extrapolated to nodes per core, and RSS per connected
 * node. Then, at the first size: `update --cert-expiry 1h` — time until
 * every node has been told, and until every node has renewed (each at a
 * random moment of the spread window: the agents' own 60 s, or the longer
 * one the manager asks for with that many nodes) with the failures; and
 * `node rm` — time until the node is told.
 *
 * The floor, same run, same client: a bare node:https server holding the
 * same connections and answering each long poll after its wait, with no
 * work (scripts/lib/https-baseline.ts).
 *
 * With `--cert-expiry DUR` (issue 31) the manager is founded with that
 * expiry, and after the rest each node renews as the agent does: every
 * 50–80% of the lifetime (the first at a uniformly random moment of the
 * first 65%, so the steady rate N / 0.65 L holds from the start), the long
 * poll's wait ending at the renewal, the renewal on the session's
 * connection, which the renewed certificate goes on speaking on (a new
 * connection only if the manager does not say `sameConnection`). The manager's
 * CPU over that phase, less the rest's, is the renewal work: per renewal and
 * per node per minute. The floors do the same in the same run: the bare
 * server holding the same sessions, and the same server also doing the bare
 * renewal crypto (CSR check + sign, muster's own code) for each renewal on
 * the kept-alive connection. Then a burst: every node renews once, 600 due
 * each second, so that renewals are most of the CPU measured and the
 * figure per renewal does not hang on the idle rate subtracted (the steady
 * phase's 5–10 renewals/s are a small share of its CPU). The cut-expiry and
 * rm checks are skipped then.
 *
 * Every process here may hold at most RLIMIT_NOFILE descriptors (20,000 on
 * these machines, and not raisable without CAP_SYS_RESOURCE), so the sizes
 * stay below it; the default is 10,000 and 18,000.
 *
 * `--node24` runs the whole benchmark (floor and manager too) on the Node 24
 * LTS binary of scripts/node24.sh.
 *
 * `--store managed` loads a manager on its managed store (issue 27): three
 * managers on this machine, each running its etcd member, the nodes all in
 * session with the founder. Its CPU is that of all six processes; its RSS
 * that of the founder and its member.
 *
 *   npm run bench:idle [-- --nodes 10000,18000 --spread SECONDS --floor on|off --cert-expiry 10m --rest SECONDS --cpu-prof DIR --store embedded|managed --node24]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { parseArgs } from 'node:util';
import { Client } from 'undici';
import { createCsr } from '../src/pki/csr.js';
import { generateNodeKeySync } from '../src/pki/keys.js';
import { DEFAULT_RENEWER_OPTIONS } from '../src/agent/renewer.js';
import { spreadDelayMs, spreadWindowMs } from '../src/agent/session.js';
import { parseCertExpiry } from '../src/core/duration.js';
import { send as transportSend } from '../src/api/transport.js';
import { benchDispatcher, pool, runtimeLine, send, startFloorServer, startManagedCluster, startManagerProcess } from './lib/load.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '10000,18000' },
    spread: { type: 'string' },
    floor: { type: 'string', default: 'on' },
    'cert-expiry': { type: 'string' },
    rest: { type: 'string', default: '60' },
    'cpu-prof': { type: 'string' },
    node24: { type: 'boolean', default: false },
    store: { type: 'string', default: 'embedded' },
    'burst-rate': { type: 'string', default: '600' },
  },
});
if (values.store !== 'embedded' && values.store !== 'managed') throw new Error('--store is embedded or managed');
/** --store managed: the manager on its managed etcd store (three managers, each with its member: issue 27). */
const MANAGED = values.store === 'managed';
if (values.node24) {
  const node24 = execFileSync('bash', [join(import.meta.dirname, 'node24.sh')], { encoding: 'utf8' }).trim();
  const args = process.argv.slice(2).filter((a) => a !== '--node24' && a !== '--');
  const ran = spawnSync(node24, ['--import', 'tsx', import.meta.filename, ...args], { stdio: 'inherit' });
  process.exit(ran.status ?? 1);
}
/** --cert-expiry: the lifetime the manager issues; the nodes renew on it after the rest. */
const LIFETIME_MS = values['cert-expiry'] === undefined ? undefined : parseCertExpiry(values['cert-expiry']);
const SIZES = values.nodes.split(',').map(Number);
/** --spread N: every node's window, as MUSTER_RENEW_SPREAD sets it; by default the agents' own rule (spreadWindowMs), which follows the window a busy manager asks for. */
const SPREAD_OVERRIDE_MS = values.spread === undefined ? undefined : Number(values.spread) * 1000;
const WAIT_S = 30;
/** Renewals due per second in the burst (--burst-rate: lower for a store that cannot sign 600 a second here, the managed one at 10,000 nodes). */
const BURST_PER_S = Number(values['burst-rate']);
if (!(BURST_PER_S >= 1)) throw new Error('--burst-rate is a number of renewals a second, at least 1');
const REST_MS = Number(values.rest) * 1000;
const scratch = mkdtempSync(join(tmpdir(), 'muster-bench-idle-'));
const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
// Every simulated node connects from 127.0.0.1: lift the per-source cap for the manager this script starts.
process.env.MUSTER_MAX_CONNECTIONS_PER_SOURCE = '1000000';

/** The processes measured: whose CPU counts (on a managed store: every manager and etcd member), whose memory (the loaded manager and its member). */
interface Procs {
  cpu: number[];
  rss: number[];
  /** The CPU figures split by process, named (a managed store: where the rest goes). */
  parts?: { label: string; pids: number[] }[];
}
const one = (pid: number): Procs => ({ cpu: [pid], rss: [pid] });
function cpuMs(procs: Pick<Procs, 'cpu'>): number {
  let sum = 0;
  for (const pid of procs.cpu) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    sum += ((Number(fields[11]) + Number(fields[12])) / ticks) * 1000;
  }
  return sum;
}
/** CPU so far of each named part. */
const partsMs = (procs: Procs): number[] => (procs.parts ?? []).map((part) => cpuMs({ cpu: part.pids }));
/** "of which …": each part's share of the CPU between two readings of partsMs. */
function partsLine(procs: Procs, before: number[], after: number[]): string {
  const total = after.reduce((sum, ms, i) => sum + ms - before[i]!, 0);
  const shares = (procs.parts ?? []).map(
    (part, i) => `${part.label} ${((after[i]! - before[i]!) / 1000).toFixed(2)} s (${((100 * (after[i]! - before[i]!)) / total).toFixed(0)}%)`,
  );
  return `${''.padEnd(29)}of which: ${shares.join(', ')}`;
}
function rssMiB(procs: Procs): number {
  let sum = 0;
  for (const pid of procs.rss) sum += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  return sum;
}
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The first failures seen, by kind, for the report. */
const failureKinds = new Map<string, number>();
function failed(node: SimNode, what: string): void {
  node.failures += 1;
  failureKinds.set(what, (failureKinds.get(what) ?? 0) + 1);
}

/** One simulated node: its credentials, its connection, and what it saw. */
interface SimNode {
  id: string;
  certPem: string;
  keyPem: string;
  client?: Client;
  polling: boolean;
  toldAt?: number;
  renewedAt?: number;
  removedAt?: number;
  failures: number;
  /** In the renewal phase: when this node renews next (ms since epoch). */
  renewAt?: number;
}

/** A moment of the renewal window (50–80% of the lifetime, DESIGN §7), from now. */
function nextRenewal(lifetimeMs: number): number {
  const { windowStart, windowEnd } = DEFAULT_RENEWER_OPTIONS;
  return Date.now() + Math.floor(lifetimeMs * (windowStart + (windowEnd - windowStart) * Math.random()));
}

/** The state the sessions share: stop, the cut-expiry renewals, and the steady renewals of --cert-expiry. */
interface SessionState {
  stopping: boolean;
  renewing: boolean;
  windowMs: number;
  /** Renewals on schedule (--cert-expiry): the poll's wait ends at the node's renewAt. */
  steady: boolean;
  /** After a renewal, take the new certificate, and reconnect with it unless the manager says it speaks on the kept connection (muster); the floor keeps its connection and certificate. */
  reconnect: boolean;
  renewals: number;
}

function connect(address: string, rootPem: string, node: Pick<SimNode, 'certPem' | 'keyPem'>): Client {
  return new Client(`https://${address}`, {
    connect: {
      secureContext: createSecureContext({ ca: rootPem, cert: node.certPem, key: node.keyPem }),
      rejectUnauthorized: true,
      checkServerIdentity: () => undefined,
    },
    keepAliveTimeout: 120_000,
    headersTimeout: (WAIT_S + 30) * 1000,
    bodyTimeout: (WAIT_S + 30) * 1000,
    pipelining: 1,
  });
}

async function request(client: Client, method: 'GET' | 'POST', path: string, body?: string): Promise<{ status: number; body: string }> {
  const r = await client.request({ method, path, ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }) });
  return { status: r.statusCode, body: await r.body.text() };
}

/** The long-poll loop of one node, until `stop()`. */
function runSession(node: SimNode, address: string, rootPem: string, state: SessionState): Promise<void> {
  node.client = connect(address, rootPem, node);
  node.polling = true;
  return (async () => {
    while (!state.stopping) {
      if (state.steady && LIFETIME_MS !== undefined && node.renewAt !== undefined && Date.now() >= node.renewAt) {
        await renewOnSchedule(node, address, rootPem, state, LIFETIME_MS);
        continue;
      }
      // As the agent: the wait ends at the scheduled renewal (whole seconds, at least 1).
      const untilRenewal = state.steady && node.renewAt !== undefined ? Math.floor((node.renewAt - Date.now()) / 1000) : WAIT_S;
      const wait = Math.max(1, Math.min(WAIT_S, untilRenewal));
      let answer: { status: number; body: string };
      try {
        answer = await request(node.client!, 'GET', `/v1/nodes/self?wait=${wait}`);
      } catch (error) {
        if (state.stopping) return;
        failed(node, `poll: ${(error as { code?: string }).code ?? String(error).slice(0, 60)}`);
        await sleep(1000);
        continue;
      }
      if (answer.status === 403 && answer.body.includes('NODE_REMOVED')) {
        node.removedAt = Date.now();
        return;
      }
      if (answer.status !== 200) {
        failed(node, `poll: ${answer.status} ${answer.body.slice(0, 80)}`);
        await sleep(1000);
        continue;
      }
      const self = JSON.parse(answer.body) as { renewNow: boolean; renewSpread?: string };
      if (self.renewNow && state.renewing) {
        node.toldAt ??= Date.now();
        // As the agent does: a renewal the whole cluster was asked for waits for its moment in the spread window.
        const windowMs = spreadWindowMs({ pollMs: WAIT_S * 1000, spreadMs: SPREAD_OVERRIDE_MS }, self);
        state.windowMs = Math.max(state.windowMs, windowMs);
        await sleep(spreadDelayMs(windowMs, Math.random()));
        const key = generateNodeKeySync();
        const renewed = await request(node.client!, 'POST', '/v1/renew', JSON.stringify({ csr: createCsr({ privateKey: key.privateKey }) })).catch(
          (error: unknown) => ({ status: 0, body: String(error) }),
        );
        if (renewed.status !== 200) {
          failed(node, `renew: ${renewed.status} ${renewed.body.slice(0, 80)}`);
          continue;
        }
        node.renewedAt = Date.now();
        const answer = JSON.parse(renewed.body) as { certificate: string; sameConnection?: boolean };
        node.certPem = answer.certificate;
        node.keyPem = key.privateKeyPem;
        // As the agent: the connection stays when the renewed certificate speaks on it.
        if (answer.sameConnection === true) continue;
        const old = node.client!;
        node.client = connect(address, rootPem, node);
        void old.close();
      }
    }
  })();
}

/** One scheduled renewal, as the agent makes it: a fresh key, POST /v1/renew on the session's connection, which it keeps (muster: unless the manager does not say `sameConnection`). */
async function renewOnSchedule(node: SimNode, address: string, rootPem: string, state: SessionState, lifetimeMs: number): Promise<void> {
  // The burst may set renewAt while this renewal is on its way: then the burst's time stands.
  const due = node.renewAt;
  const key = generateNodeKeySync();
  const renewed = await request(node.client!, 'POST', '/v1/renew', JSON.stringify({ csr: createCsr({ privateKey: key.privateKey }) })).catch(
    (error: unknown) => ({ status: 0, body: String(error) }),
  );
  if (renewed.status !== 200) {
    failed(node, `renew: ${renewed.status} ${renewed.body.slice(0, 80)}`);
    if (node.renewAt === due) node.renewAt = Date.now() + 5_000;
    return;
  }
  state.renewals += 1;
  if (node.renewAt === due) node.renewAt = nextRenewal(lifetimeMs);
  if (!state.reconnect) return;
  const answer = JSON.parse(renewed.body) as { certificate: string; sameConnection?: boolean };
  node.certPem = answer.certificate;
  node.keyPem = key.privateKeyPem;
  if (answer.sameConnection === true) return;
  const old = node.client!;
  node.client = connect(address, rootPem, node);
  void old.close();
}

/**
 * The renewal phase of --cert-expiry: each node's first renewal at a
 * uniformly random moment of the first 65% of the lifetime (the steady
 * rate from the start), then on schedule; after a warm-up, the CPU of
 * `procs` over the rest period, less `idleMsPerMin`, is the renewal work.
 */
async function measureRenewals(
  label: string,
  procs: Procs,
  nodes: readonly SimNode[],
  state: SessionState,
  lifetimeMs: number,
  idleMsPerMin: number,
): Promise<{ renewalMsPerMin: number; perRenewalMs: number; perSecond: number; burstPerRenewalMs: number }> {
  for (const node of nodes) node.renewAt = Date.now() + Math.floor(Math.random() * 0.65 * lifetimeMs);
  state.steady = true;
  await sleep(WAIT_S * 1000); // every parked poll of the rest has ended; the waits now end at the renewals
  const cpuBefore = cpuMs(procs);
  const renewalsBefore = state.renewals;
  const started = Date.now();
  await sleep(REST_MS);
  const elapsed = Date.now() - started;
  const renewals = state.renewals - renewalsBefore;
  const renewalMs = cpuMs(procs) - cpuBefore - (idleMsPerMin * elapsed) / 60_000;
  const n = nodes.length;
  const steady = { renewalMsPerMin: (renewalMs * 60_000) / elapsed, perRenewalMs: renewalMs / Math.max(1, renewals), perSecond: (renewals * 1000) / elapsed };
  console.log(
    `${label.padEnd(28)} ${n} nodes: ${steady.perSecond.toFixed(1)} renewals/s (expected ${(n / ((0.65 * lifetimeMs) / 1000)).toFixed(1)}); renewal work ${((steady.renewalMsPerMin / n) * 1000).toFixed(1)} µs/node/min, ` +
      `${steady.perRenewalMs.toFixed(2)} ms CPU per renewal; idle + renewals ${(((idleMsPerMin + steady.renewalMsPerMin) / n) * 1000).toFixed(1)} µs/node/min; RSS ${rssMiB(procs).toFixed(0)} MiB`,
  );
  // A burst: every node renews once on its kept connection, BURST_PER_S due each second. At a steady 5–10 renewals/s
  // the renewal work is a small share of the phase's CPU and the idle rate subtracted from it varies from run to run;
  // here renewals are most of the CPU, so the figure per renewal holds from run to run.
  const burstAt = Date.now() + (WAIT_S + 1) * 1000; // after every poll parked now has ended; the next ones end at it
  // Due BURST_PER_S a second from then: more than the manager signs a second (about 850 at 1.2 ms each) piles up
  // requests past the server's timeouts, and at 18,000 nodes in one second the burst collapsed into retries.
  for (const [i, node] of nodes.entries()) node.renewAt = burstAt + Math.floor(i / BURST_PER_S) * 1000;
  await sleep(burstAt - Date.now() - 500);
  const burstCpuBefore = cpuMs(procs);
  const burstPartsBefore = partsMs(procs);
  const burstRenewalsBefore = state.renewals;
  const burstStarted = Date.now();
  await waitFor('the burst of renewals', () => state.renewals - burstRenewalsBefore >= n, 180_000).catch(() => undefined);
  const burstElapsed = Date.now() - burstStarted;
  const burstRenewals = state.renewals - burstRenewalsBefore;
  const burstMs = cpuMs(procs) - burstCpuBefore - (idleMsPerMin * burstElapsed) / 60_000;
  const burstPerRenewalMs = burstMs / Math.max(1, burstRenewals);
  console.log(
    `${''.padEnd(28)} burst: ${burstRenewals} renewals in ${(burstElapsed / 1000).toFixed(1)} s, ${burstPerRenewalMs.toFixed(2)} ms CPU per renewal (${((burstMs / burstElapsed) * 100).toFixed(0)}% of a core)`,
  );
  if (procs.parts !== undefined) console.log(partsLine(procs, burstPartsBefore, partsMs(procs)));
  return { ...steady, burstPerRenewalMs };
}

async function waitFor(what: string, check: () => boolean, limitMs: number): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > limitMs) throw new Error(`timed out: ${what}`);
    await sleep(20);
  }
  return Date.now() - started;
}

/** Idle cost of `n` long-polling connections to a process: CPU per node per minute, RSS per node. */
async function measureRest(label: string, procs: Procs, n: number, rssBefore: number): Promise<{ cpuPerNodeMin: number; rssPerNodeKb: number }> {
  const before = cpuMs(procs);
  const partsBefore = partsMs(procs);
  await sleep(REST_MS);
  const used = cpuMs(procs) - before;
  const partsAfter = partsMs(procs);
  const cpuPerNodeMin = (used / n) * (60_000 / REST_MS);
  const rssPerNodeKb = ((rssMiB(procs) - rssBefore) * 1024) / n;
  console.log(
    `${label.padEnd(28)} ${n} nodes: ${(used / 1000).toFixed(2)} s CPU in ${REST_MS / 1000} s = ${(cpuPerNodeMin * 1000).toFixed(1)} µs/node/min ` +
      `→ ${Math.floor(60_000 / cpuPerNodeMin).toLocaleString('en')} nodes per core; RSS ${rssMiB(procs).toFixed(0)} MiB, ${rssPerNodeKb.toFixed(1)} KB/node`,
  );
  if (procs.parts !== undefined) console.log(partsLine(procs, partsBefore, partsAfter));
  return { cpuPerNodeMin, rssPerNodeKb };
}

console.log(runtimeLine());
console.log(
  `long polls of ${WAIT_S} s (the default heartbeat), one kept-alive connection per node; rest measured over ${REST_MS / 1000} s; client and manager share 2 cores`,
);
if (LIFETIME_MS !== undefined)
  console.log(
    `certificates of ${values['cert-expiry']}: each node renews every 50–80% of the lifetime; renewals measured over ${REST_MS / 1000} s after a ${WAIT_S} s warm-up`,
  );
console.log(
  `load average at the start: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}\n`,
);

/** CPU per minute at each size (ms), at rest and of the renewal work, for muster and the floors: the extrapolation at the end. */
interface Point {
  n: number;
  cpuMsPerMin: number;
  renewalMsPerMin: number;
  floorMsPerMin?: number;
  floorRenewalMsPerMin?: number;
}
const measured: Point[] = [];
const TARGET_NODES = LIFETIME_MS === undefined ? 150_000 : 100_000;

for (const [index, n] of SIZES.entries()) {
  // --cpu-prof DIR: the manager writes a V8 CPU profile there when it stops (node --cpu-prof).
  const nodeArgs = values['cpu-prof'] === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof']];
  const initArgs = values['cert-expiry'] === undefined ? [] : ['--cert-expiry', values['cert-expiry']];
  // --store managed: three managers on this machine, each running its etcd member; the nodes talk to the founder.
  const cluster = MANAGED ? await startManagedCluster(scratch, { initArgs, nodeArgs }) : undefined;
  const manager = cluster?.founder ?? (await startManagerProcess({ timeoutMs: 1_800_000, nodeArgs, initArgs }));
  const procs: Procs =
    cluster === undefined
      ? one(manager.child.pid!)
      : {
          cpu: [...cluster.managerPids, ...cluster.memberPids],
          rss: [cluster.managerPids[0]!, cluster.memberPids[0]!],
          parts: [
            { label: 'the manager the nodes talk to', pids: cluster.managerPids.slice(0, 1) },
            { label: 'its etcd member', pids: cluster.memberPids.slice(0, 1) },
            { label: 'the other two managers', pids: cluster.managerPids.slice(1) },
            { label: 'their members', pids: cluster.memberPids.slice(1) },
          ],
        };
  console.log(`— ${n} nodes —`);
  console.log(`joining ${n} nodes…`);
  const joiner = benchDispatcher({ rootPem: manager.rootPem });
  const joinStarted = Date.now();
  const nodes = await pool(
    Array.from({ length: n }, () => async (): Promise<SimNode> => {
      const key = generateNodeKeySync();
      const r = await send({
        dispatcher: joiner,
        address: manager.address,
        method: 'POST',
        path: '/v1/join',
        body: JSON.stringify({ token: manager.token, csr: createCsr({ privateKey: key.privateKey }) }),
      });
      if (r.status !== 200) throw new Error(`join failed: ${r.status} ${r.body.slice(0, 200)}`);
      const joined = JSON.parse(r.body) as { nodeId: string; certificate: string };
      return { id: joined.nodeId, certPem: joined.certificate, keyPem: key.privateKeyPem, polling: false, failures: 0 };
    }),
    64,
  );
  await joiner.close();
  console.log(`  joined in ${((Date.now() - joinStarted) / 1000).toFixed(1)} s`);
  await sleep(6_000); // the last-seen batch of the joins is written
  const rssBefore = rssMiB(procs);
  const state: SessionState = { stopping: false, renewing: false, windowMs: 0, steady: false, reconnect: true, renewals: 0 };
  const sessions: Promise<void>[] = [];
  for (const [i, node] of nodes.entries()) {
    sessions.push(runSession(node, manager.address, manager.rootPem, state));
    if (i % 200 === 199) await sleep(50); // open the connections at a pace the handshakes allow
  }
  await sleep(WAIT_S * 1000 + 5_000); // every node has made its first long poll, and its second is parked
  const rest = await measureRest(MANAGED ? 'muster, managed store' : 'muster', procs, n, rssBefore);
  const point: Point = { n, cpuMsPerMin: rest.cpuPerNodeMin * n, renewalMsPerMin: 0 };
  measured.push(point);
  let renewal: Awaited<ReturnType<typeof measureRenewals>> | undefined;
  if (LIFETIME_MS !== undefined) {
    renewal = await measureRenewals(MANAGED ? 'muster renewals, managed' : 'muster renewals', procs, nodes, state, LIFETIME_MS, point.cpuMsPerMin);
    point.renewalMsPerMin = renewal.renewalMsPerMin;
  }

  if (index === 0 && LIFETIME_MS === undefined) {
    const admin = benchDispatcher({ rootPem: manager.rootPem, ...manager.adminTls });
    state.renewing = true;
    const cut = Date.now();
    await transportSend({ dispatcher: admin, url: `https://${manager.address}/v1/cluster`, method: 'PATCH', body: { certExpiry: '1h' }, timeoutMs: 30_000 });
    await waitFor('every node told', () => nodes.every((node) => node.toldAt !== undefined), 120_000);
    const toldTimes = nodes.map((node) => node.toldAt! - cut).sort((a, b) => a - b);
    console.log(
      `update --cert-expiry 1h: every node told within ${(toldTimes.at(-1)! / 1000).toFixed(2)} s of the change (p50 ${toldTimes[Math.floor(n / 2)]} ms)`,
    );
    await waitFor('every node renewed', () => nodes.every((node) => node.renewedAt !== undefined), 300_000 + 240_000);
    const renewedAll = Math.max(...nodes.map((node) => node.renewedAt!));
    const failures = nodes.reduce((sum, node) => sum + node.failures, 0);
    console.log(
      `  every node renewed within ${((renewedAll - cut) / 1000).toFixed(1)} s of the change (spread window ${state.windowMs / 1000} s${SPREAD_OVERRIDE_MS === undefined ? ', as the manager asked' : ', --spread'}); ${failures} failed requests`,
    );
    for (const [what, count] of failureKinds) console.log(`    ${count} × ${what}`);
    const victim = nodes[0]!;
    await transportSend({ dispatcher: admin, url: `https://${manager.address}/v1/nodes/${victim.id}?force=1`, method: 'DELETE', timeoutMs: 30_000 });
    const removed = await waitFor('the removed node told', () => victim.removedAt !== undefined, 60_000);
    console.log(`node rm: the node was told in ${removed} ms (its long poll answered 403 NODE_REMOVED)`);
    await admin.close();
  }
  state.stopping = true;
  if (cluster === undefined) await manager.stop();
  else await cluster.stop();
  await Promise.all(nodes.map((node) => node.client?.destroy().catch(() => undefined)));
  await Promise.allSettled(sessions);

  if (values.floor !== 'off') {
    // The floor: the same connections, long-polling a bare node:https server.
    const server = await startFloorServer(scratch, { signs: LIFETIME_MS !== undefined });
    const child = server.child;
    const port = server.address.split(':')[1]!;
    const ca = { certPem: server.rootPem };
    await sleep(1000);
    const floorProcs = one(child.pid!);
    const floorRss = rssMiB(floorProcs);
    const floorState: SessionState = { stopping: false, renewing: false, windowMs: 0, steady: false, reconnect: false, renewals: 0 };
    const floorNodes: SimNode[] = nodes.map(({ client: _client, ...node }) => ({ ...node, polling: false }));
    const floorSessions: Promise<void>[] = [];
    for (const [i, node] of floorNodes.entries()) {
      floorSessions.push(runSession(node, `127.0.0.1:${port}`, ca.certPem, floorState));
      if (i % 200 === 199) await sleep(50);
    }
    await sleep(WAIT_S * 1000 + 5_000);
    const floor = await measureRest('bare node:https floor', floorProcs, n, floorRss);
    console.log(
      `  muster / floor: CPU ${(rest.cpuPerNodeMin / floor.cpuPerNodeMin).toFixed(2)}×, RSS per node ${(rest.rssPerNodeKb / floor.rssPerNodeKb).toFixed(2)}×`,
    );
    point.floorMsPerMin = floor.cpuPerNodeMin * n;
    if (LIFETIME_MS !== undefined && renewal !== undefined) {
      const floorRenewal = await measureRenewals('floor + renewal crypto', floorProcs, floorNodes, floorState, LIFETIME_MS, point.floorMsPerMin);
      point.floorRenewalMsPerMin = floorRenewal.renewalMsPerMin;
      console.log(
        `  muster / floor per renewal: ${(renewal.burstPerRenewalMs / floorRenewal.burstPerRenewalMs).toFixed(2)}× in the burst, ${(renewal.perRenewalMs / floorRenewal.perRenewalMs).toFixed(2)}× steady (target <= 1.3)`,
      );
    }
    floorState.stopping = true;
    await server.stop();
    await Promise.all(floorNodes.map((node) => node.client?.destroy().catch(() => undefined)));
    await Promise.allSettled(floorSessions);
  }
  console.log('');
}
const [small, large] = [measured[0], measured.at(-1)];
if (small !== undefined && large !== undefined && large.n > small.n) {
  // A straight line through the smallest and largest size: a fixed cost plus a cost per node.
  const line = (at: (p: Point) => number | undefined): number | undefined => {
    const a = at(small);
    const b = at(large);
    if (a === undefined || b === undefined) return undefined;
    return (a + ((b - a) / (large.n - small.n)) * (TARGET_NODES - small.n)) / 60_000;
  };
  const target = TARGET_NODES.toLocaleString('en');
  const idle = line((p) => p.cpuMsPerMin)!;
  if (LIFETIME_MS === undefined) {
    console.log(`extrapolated linearly from ${small.n} and ${large.n} nodes: ${target} nodes at rest take ${idle.toFixed(2)} of a core (target <= 1)`);
  } else {
    const total = line((p) => p.cpuMsPerMin + p.renewalMsPerMin)!;
    console.log(
      `extrapolated linearly from ${small.n} and ${large.n} nodes, ${target} nodes on ${values['cert-expiry']} certificates (${(TARGET_NODES / ((0.65 * LIFETIME_MS) / 1000)).toFixed(0)} renewals/s):`,
    );
    console.log(`  muster: ${total.toFixed(2)} of a core (idle ${idle.toFixed(2)} + renewals ${(total - idle).toFixed(2)}; target <= 1)`);
    const floorIdle = line((p) => p.floorMsPerMin);
    const floorTotal = line((p) =>
      p.floorMsPerMin === undefined || p.floorRenewalMsPerMin === undefined ? undefined : p.floorMsPerMin + p.floorRenewalMsPerMin,
    );
    if (floorIdle !== undefined && floorTotal !== undefined)
      console.log(
        `  floor (bare node:https + renewal crypto): ${floorTotal.toFixed(2)} of a core (idle ${floorIdle.toFixed(2)} + renewals ${(floorTotal - floorIdle).toFixed(2)})`,
      );
  }
}
rmSync(scratch, { recursive: true, force: true });
