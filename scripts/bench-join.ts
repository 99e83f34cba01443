/**
 * npm run bench:join — N distinct nodes with pre-made keys and CSRs join one
 * manager (its own process) with concurrency C and a fresh TLS connection
 * per join, as real nodes do. Prints joins/s, p50/p99 latency, the CPU the
 * manager and the client spent per join, and the manager's peak RSS.
 *
 * Two references run with the same client, the same concurrency and fresh
 * connections too:
 *  - a bare `node:https` server with muster's TLS settings and no work
 *    behind it (scripts/lib/https-baseline.ts): the most any Node HTTPS
 *    service gets from this machine; and the same server doing a join's
 *    cryptography too (CSR key import, signature check, signing, with
 *    muster's own code): what no join can do without;
 *  - `cfssl serve` (Debian: golang-cfssl) with a throwaway CA, signing the
 *    same CSRs, when cfssl is installed; the muster/cfssl ratio is printed.
 *
 * muster runs twice: on its embedded store, and on etcd (one etcd-server
 * member on loopback, its CPU counted separately) when etcd is installed; the
 * etcd/embedded ratio is printed (target >= 0.7). With etcd, muster also runs
 * on three etcd members the same way, and on its managed store (issue 27):
 * three managers on this machine, founded with `init --store etcd` and two
 * manager-token joins, each running its own etcd member (TLS, etcd's access
 * control). The load goes to the founder alone, as it goes to the one
 * manager of the embedded store; the managed/embedded ratio is printed
 * (target >= 0.6), with the CPU each manager and each member spent.
 *
 * Every server first answers --warmup requests that are not measured (the
 * same CSRs), so the figures are the steady state and not V8 compiling
 * muster's code: on a 3,000-join run the first round costs muster ~0.5 ms
 * more per join than the next ones.
 *
 * `--node24` runs the whole benchmark (floor and managers too, since they
 * are spawned from process.execPath) on Node 24 LTS, fetched by
 * scripts/node24.sh.
 *
 * The client is scripts/loadgen (Go, stdlib only) when `go` is installed
 * (Debian: golang-go): on a 2-core machine the client shares the cores with
 * the server, and the Node client spends about as much CPU per handshake as
 * the server it measures. Without Go, the Node client in scripts/lib/load.ts
 * runs instead and the figures say so.
 *
 *   npm run bench:join [-- --nodes 3000 --warmup 1000 --concurrency 64 --client auto|go|node --cfssl auto|off --baseline on|off --etcd auto|off --managed auto|off --node24]
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { createCsr } from '../src/pki/csr.js';
import { generateNodeKeySync } from '../src/pki/keys.js';
import { startCfssl } from '../test/helpers/cfssl.js';
import { startEtcd } from '../test/helpers/etcd.js';
import { benchDispatcher, percentile, pool, send, startFloorServer, startManagedCluster, startManagerProcess, runtimeLine } from './lib/load.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '1000' },
    node24: { type: 'boolean', default: false },
    concurrency: { type: 'string', default: '64' },
    client: { type: 'string', default: 'auto' },
    cfssl: { type: 'string', default: 'auto' },
    baseline: { type: 'string', default: 'on' },
    etcd: { type: 'string', default: 'auto' },
    managed: { type: 'string', default: 'auto' },
  },
});
if (values.node24) {
  const node24 = execFileSync('bash', [join(import.meta.dirname, 'node24.sh')], { encoding: 'utf8' }).trim();
  const args = process.argv.slice(2).filter((a) => a !== '--node24' && a !== '--');
  const ran = spawnSync(node24, ['--import', 'tsx', import.meta.filename, ...args], { stdio: 'inherit' });
  process.exit(ran.status ?? 1);
}
const N = Number(values.nodes);
const WARMUP = Number(values.warmup);
const C = Number(values.concurrency);
const scratch = mkdtempSync(join(tmpdir(), 'muster-bench-join-'));
const run = promisify(execFile);

const installed = (command: string, args: string[]): boolean => {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

// --- the client
const useGo = values.client !== 'node' && installed('go', ['version']);
if (values.client === 'go' && !useGo) {
  console.error('--client go: go is not installed (apt-get install golang-go)');
  process.exit(2);
}
const loadgen = join(scratch, 'loadgen');
if (useGo) execFileSync('go', ['build', '-o', loadgen, '.'], { cwd: join(import.meta.dirname, 'loadgen'), stdio: 'inherit' });

/** Where to send the load. */
interface Target {
  address: string;
  path: string;
  rootPem: string;
  bodies: string[];
}

/** What one load run measured. */
interface LoadResult {
  ok: number;
  errors: number;
  seconds: number;
  p50: number;
  p99: number;
  clientCpuSeconds: number;
  firstError: string;
}

async function load(target: Target): Promise<LoadResult> {
  if (useGo) {
    const bodies = join(scratch, 'bodies');
    const ca = join(scratch, 'ca.pem');
    writeFileSync(bodies, target.bodies.join('\n'));
    writeFileSync(ca, target.rootPem);
    // Asynchronously: cfssl logs every signature to a pipe this process must keep draining.
    const { stdout } = await run(loadgen, [
      '-url',
      `https://${target.address}${target.path}`,
      '-cacert',
      ca,
      '-servername',
      '127.0.0.1',
      '-bodies',
      bodies,
      '-concurrency',
      String(C),
    ]);
    const r = JSON.parse(stdout) as Omit<LoadResult, 'clientCpuSeconds'> & { cpuSeconds: number };
    return { ...r, clientCpuSeconds: r.cpuSeconds };
  }
  const context = benchDispatcher({ rootPem: target.rootPem });
  const cpu = process.cpuUsage();
  const started = performance.now();
  const answers = await pool(
    target.bodies.map((body) => () => send({ dispatcher: context, address: target.address, method: 'POST', path: target.path, body })),
    C,
  );
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const failed = answers.filter((a) => a.status !== 200);
  return {
    ok: answers.length - failed.length,
    errors: failed.length,
    seconds,
    p50: percentile(
      answers.map((a) => a.ms),
      50,
    ),
    p99: percentile(
      answers.map((a) => a.ms),
      99,
    ),
    clientCpuSeconds: (used.user + used.system) / 1e6,
    firstError: failed[0] === undefined ? '' : `${failed[0].status} ${failed[0].body.slice(0, 200)}`,
  };
}

const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
/** User + system CPU seconds of a process, all its threads. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

/** One measured run: the load, and the CPU the server spent on it. */
interface Measured extends LoadResult {
  rate: number;
  serverCpuMs: number;
  clientCpuMs: number;
}

async function measure(name: string, serverPid: number | undefined, target: Target): Promise<Measured> {
  if (WARMUP > 0) {
    const warm = await load({ ...target, bodies: target.bodies.slice(0, WARMUP) });
    if (warm.errors > 0) console.log(`${name}: warm-up had ${warm.errors} errors: ${warm.firstError}`);
  }
  const before = cpuSeconds(serverPid);
  const result = await load(target);
  const serverCpuMs = ((cpuSeconds(serverPid) - before) * 1000) / target.bodies.length;
  const measured = { ...result, rate: result.ok / result.seconds, serverCpuMs, clientCpuMs: (result.clientCpuSeconds * 1000) / target.bodies.length };
  console.log(
    `${name.padEnd(22)} ${measured.rate.toFixed(0).padStart(5)}/s  ${result.ok} ok, ${result.errors} errors, p50 ${result.p50.toFixed(0)} ms, p99 ${result.p99.toFixed(0)} ms, ` +
      `server ${serverCpuMs.toFixed(2)} ms CPU/request, client ${measured.clientCpuMs.toFixed(2)} ms`,
  );
  if (result.firstError !== '') console.log(`  first error: ${result.firstError}`);
  return measured;
}

console.log(runtimeLine());
console.log(`preparing ${N} keys and CSRs…`);
const csrs = Array.from({ length: N }, () => createCsr({ privateKey: generateNodeKeySync().privateKey }));
const cores = availableParallelism();
console.log(
  `${N} requests per server after ${WARMUP} unmeasured ones, concurrency ${C}, a fresh TLS connection each, ${cores} cores shared by client and server`,
);
console.log(`client: ${useGo ? 'scripts/loadgen (Go)' : 'Node (scripts/lib/load.ts; install golang-go for a cheaper client)'}\n`);

// --- the floor: a bare Node HTTPS server with muster's TLS settings and a manager-profile certificate
let floor: Measured | undefined;
/** The floor that also reads, checks and signs each CSR (muster's own parseCsr and issueCertificate): what a join cannot do without. */
let floorSigns: Measured | undefined;
if (values.baseline !== 'off') {
  const server = await startFloorServer(scratch);
  floor = await measure('bare node:https floor', server.child.pid, {
    address: server.address,
    path: '/',
    rootPem: server.rootPem,
    bodies: csrs.map((csr) => JSON.stringify({ token: 'x', csr })),
  });
  await server.stop();
  const signing = await startFloorServer(scratch, { signs: true });
  floorSigns = await measure('floor + CSR check, sign', signing.child.pid, {
    address: signing.address,
    path: '/',
    rootPem: signing.rootPem,
    bodies: csrs.map((csr) => JSON.stringify({ token: 'x', csr })),
  });
  await signing.stop();
}

// --- muster
const manager = await startManagerProcess();
const rssBefore = manager.memory().rss;
const muster = await measure('muster joins', manager.child.pid, {
  address: manager.address,
  path: '/v1/join',
  rootPem: manager.rootPem,
  bodies: csrs.map((csr) => JSON.stringify({ token: manager.token, csr })),
});
const memory = manager.memory();
await manager.stop();

// --- muster on etcd, same CSRs
/** CPU per join of each process in `pids`, measured over `work`. */
async function cpuPerJoin<T>(pids: number[], work: () => Promise<T>): Promise<{ result: T; ms: number[] }> {
  const before = pids.map(cpuSeconds);
  const result = await work();
  return { result, ms: pids.map((pid, i) => ((cpuSeconds(pid) - before[i]!) * 1000) / csrs.length) };
}
const list = (ms: number[]): string => ms.map((m) => m.toFixed(2)).join(' + ');

let onEtcd: (Measured & { etcdCpuMs: number }) | undefined;
/** On three plain etcd members (no TLS, no access control): what raft's replication alone costs. */
let onEtcd3: (Measured & { etcdCpuMs: number[] }) | undefined;
if (values.etcd !== 'off' && installed('etcd', ['--version'])) {
  for (const size of [1, 3] as const) {
    const etcd = await startEtcd({ size });
    const ha = await startManagerProcess({ initArgs: ['--store', etcd.storeFlag] });
    const { result: measured, ms } = await cpuPerJoin(etcd.pids(), () =>
      measure(size === 1 ? 'muster joins, etcd store' : 'muster, etcd 3 members', ha.child.pid, {
        address: ha.address,
        path: '/v1/join',
        rootPem: ha.rootPem,
        bodies: csrs.map((csr) => JSON.stringify({ token: ha.token, csr })),
      }),
    );
    console.log(`  etcd CPU per join ${list(ms)} ms`);
    if (size === 1) onEtcd = { ...measured, etcdCpuMs: ms[0]! };
    else onEtcd3 = { ...measured, etcdCpuMs: ms };
    await ha.stop();
    await etcd.stop();
  }
} else {
  console.log(values.etcd === 'off' ? 'etcd: skipped (--etcd off)' : 'etcd: not installed, comparison skipped (apt-get install etcd-server)');
}

// --- muster on its managed store: three managers on this machine, each with its own etcd member
let managed: (Measured & { otherManagersCpuMs: number[]; membersCpuMs: number[] }) | undefined;
if (values.managed !== 'off' && installed('etcd', ['--version']) && installed('etcdctl', ['version'])) {
  const cluster = await startManagedCluster(scratch);
  const { founder } = cluster;
  const { result: measured, ms } = await cpuPerJoin([...cluster.managerPids.slice(1), ...cluster.memberPids], () =>
    measure('muster, managed store', founder.child.pid, {
      address: founder.address,
      path: '/v1/join',
      rootPem: founder.rootPem,
      bodies: csrs.map((csr) => JSON.stringify({ token: founder.token, csr })),
    }),
  );
  managed = { ...measured, otherManagersCpuMs: ms.slice(0, 2), membersCpuMs: ms.slice(2) };
  console.log(
    `  (3 members) CPU per join: the other two managers ${list(managed.otherManagersCpuMs)} ms, the etcd members (the founder's first) ${list(managed.membersCpuMs)} ms`,
  );
  const { leftRunning } = await cluster.stop();
  console.log(
    `  stopped 3 managers and their 3 etcd members${leftRunning.length === 0 ? '' : `; members ${leftRunning.join(', ')} outlived their managers and were killed`}`,
  );
} else {
  console.log(
    values.managed === 'off'
      ? 'managed store: skipped (--managed off)'
      : 'managed store: etcd or etcdctl not installed, skipped (apt-get install etcd-server etcd-client)',
  );
}

// --- cfssl serve, same CSRs
let cfssl: Measured | undefined;
if (values.cfssl !== 'off' && installed('cfssl', ['version'])) {
  const server = await startCfssl(mkdtempSync(join(scratch, 'cfssl-'))); // a throwaway root, TLS on loopback
  cfssl = await measure('cfssl serve signs', server.pid, {
    address: server.url.replace('https://', ''),
    path: '/api/v1/cfssl/sign',
    rootPem: server.rootPem,
    bodies: csrs.map((csr) => JSON.stringify({ certificate_request: csr })),
  });
  await server.stop();
} else {
  console.log(values.cfssl === 'off' ? 'cfssl serve: skipped (--cfssl off)' : 'cfssl serve: not installed, comparison skipped (apt-get install golang-cfssl)');
}
rmSync(scratch, { recursive: true, force: true });

console.log(`\nmuster: ${muster.rate.toFixed(0)} joins/s (target >= 1,000), p50 ${muster.p50.toFixed(0)} ms, p99 ${muster.p99.toFixed(0)} ms`);
console.log(`manager RSS ${rssBefore.toFixed(0)} MiB before, peak ${memory.peak.toFixed(0)} MiB`);
if (cfssl !== undefined)
  console.log(
    `rate muster/cfssl: ${(muster.rate / cfssl.rate).toFixed(2)} (target >= 0.7); bare node:https/cfssl ${floor === undefined ? 'not measured' : (floor.rate / cfssl.rate).toFixed(2)}`,
  );
if (floor !== undefined)
  console.log(
    `server CPU per join muster/bare node:https: ${(muster.serverCpuMs / floor.serverCpuMs).toFixed(2)} (target <= 1.6); rate ${(muster.rate / floor.rate).toFixed(2)}`,
  );
if (floor !== undefined && floorSigns !== undefined) {
  console.log(
    `  the floor that also checks and signs each CSR (muster's parseCsr + issueCertificate) costs ${(floorSigns.serverCpuMs / floor.serverCpuMs).toFixed(2)} × the floor; muster ${(muster.serverCpuMs / floorSigns.serverCpuMs).toFixed(2)}× that`,
  );
}
if (onEtcd !== undefined)
  console.log(
    `ratio etcd store/embedded store: ${(onEtcd.rate / muster.rate).toFixed(2)} (target >= 0.7); manager CPU per join ${onEtcd.serverCpuMs.toFixed(2)} ms vs ${muster.serverCpuMs.toFixed(2)} ms, plus etcd ${onEtcd.etcdCpuMs.toFixed(2)} ms`,
  );
if (onEtcd3 !== undefined)
  console.log(
    `  on three etcd members (plain, one manager): ${(onEtcd3.rate / muster.rate).toFixed(2)}× embedded; manager ${onEtcd3.serverCpuMs.toFixed(2)} ms, etcd ${list(onEtcd3.etcdCpuMs)} ms per join`,
  );
if (managed !== undefined) {
  const all = managed.serverCpuMs + [...managed.otherManagersCpuMs, ...managed.membersCpuMs].reduce((a, b) => a + b, 0);
  console.log(
    `managed store (3 members): ${managed.rate.toFixed(0)} joins/s vs embedded ${muster.rate.toFixed(0)} joins/s, ratio ${(managed.rate / muster.rate).toFixed(2)} (target >= 0.6); ` +
      `server-side CPU per join ${all.toFixed(2)} ms (loaded manager ${managed.serverCpuMs.toFixed(2)}, other managers ${list(managed.otherManagersCpuMs)}, members ${list(managed.membersCpuMs)}) vs ${muster.serverCpuMs.toFixed(2)} ms embedded`,
  );
}
const ceiling = (cores * 1000) / (muster.serverCpuMs + muster.clientCpuMs);
console.log(
  `CPU per join, server + client: ${(muster.serverCpuMs + muster.clientCpuMs).toFixed(2)} ms, so ${cores} cores cap this run at ~${ceiling.toFixed(0)} joins/s`,
);
process.exit(muster.errors > 0 || (onEtcd?.errors ?? 0) > 0 || (onEtcd3?.errors ?? 0) > 0 || (managed?.errors ?? 0) > 0 ? 1 : 0);
