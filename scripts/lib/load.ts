/**
 * Shared pieces of the load benchmarks: a manager in its own process (so its
 * memory is its own), fresh-connection HTTPS requests with TLS contexts made
 * once, a bounded worker pool, and percentiles.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDispatcher, send as transportSend, type Dispatcher } from '../../src/api/transport.js';
import { systemClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { createRootCa, loadSigningCa } from '../../src/pki/ca.js';
import { createCsr, parseCsr } from '../../src/pki/csr.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { spawnMuster, type ChildRun } from '../../test/helpers/cli.js';
import { freePort } from '../../test/helpers/etcd.js';

/** The floor server of the benchmarks, running. */
export interface FloorServer {
  child: ChildProcess;
  address: string;
  rootPem: string;
  stop(): Promise<void>;
}

/**
 * Starts scripts/lib/https-baseline.ts in its own process with a
 * manager-profile certificate from a throwaway root (files in `scratch`);
 * with `signs`, it also checks and signs the CSR of each `{csr}` body.
 */
export async function startFloorServer(scratch: string, options: { signs?: boolean } = {}): Promise<FloorServer> {
  const material = createRootCa({ clusterId: 'benchfloor000000000000000', clock: systemClock, random: systemRandom });
  const ca = loadSigningCa(material);
  const key = generateNodeKeySync();
  const issued = issueCertificate({
    ca,
    csr: parseCsr(createCsr({ privateKey: key.privateKey })),
    role: 'manager',
    commonName: 'floor',
    clusterId: 'benchfloor000000000000000',
    hosts: ['127.0.0.1'],
    validityMs: 86_400_000,
    clock: systemClock,
    random: systemRandom,
  });
  writeFileSync(join(scratch, 'floor.crt'), issued.certPem);
  writeFileSync(join(scratch, 'floor.key'), key.privateKeyPem, { mode: 0o600 });
  const caFiles: string[] = [];
  if (options.signs === true) {
    writeFileSync(join(scratch, 'floor-ca.crt'), material.certPem);
    writeFileSync(join(scratch, 'floor-ca.key'), material.keyPem, { mode: 0o600 });
    caFiles.push(join(scratch, 'floor-ca.crt'), join(scratch, 'floor-ca.key'));
  }
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, 'https-baseline.ts'), join(scratch, 'floor.crt'), join(scratch, 'floor.key'), ...caFiles],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve(d.toString('utf8').trim()));
    child.once('exit', (code) => reject(new Error(`https-baseline exited with ${code}`)));
  });
  return {
    child,
    address: `127.0.0.1:${port}`,
    rootPem: ca.certPem,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A manager process founded in a scratch dir. */
export interface ManagerProcess {
  child: ChildProcess;
  token: string;
  managerToken: string;
  address: string;
  /** Its data dir (client commands on its host read it). */
  dataDir: string;
  rootPem: string;
  /** The manager's own certificate and key: an admin caller for benchmarks. */
  adminTls: { certPem: string; keyPem: string };
  /** VmRSS now and VmHWM (peak), in MiB. */
  memory(): { rss: number; peak: number };
  stop(): Promise<void>;
}

/** Starts `muster init` on 127.0.0.1:0 in its own process; gives up after `timeoutMs`. */
export async function startManagerProcess(options: { nodeArgs?: string[]; initArgs?: string[]; timeoutMs?: number } = {}): Promise<ManagerProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'muster-bench-'));
  const child = spawn(
    process.execPath,
    [
      ...(options.nodeArgs ?? []),
      'dist/cli/main.js',
      'init',
      '--data-dir',
      join(dir, 'm'),
      '--listen-addr',
      '127.0.0.1:0',
      '--log-level',
      'warn',
      ...(options.initArgs ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const killer = setTimeout(() => {
    console.error('benchmark: giving up on the time limit');
    child.kill('SIGKILL');
    process.exit(1);
  }, options.timeoutMs ?? 600_000);
  const printed = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (/muster join --token \S+ \S+/.test(out)) resolve(out);
    });
    child.on('exit', () => reject(new Error(`manager exited:\n${out}`)));
  });
  const [, token = '', address = ''] = /muster join --token (\S+) (\S+)/.exec(printed) ?? [];
  const certs = join(dir, 'm', 'certificates');
  const rootPem = readFileSync(join(certs, 'root-ca.crt'), 'utf8');
  const adminTls = { certPem: readFileSync(join(certs, 'node.crt'), 'utf8'), keyPem: readFileSync(join(certs, 'node.key'), 'utf8') };
  const admin = benchDispatcher({ rootPem, ...adminTls });
  const tokens = await send({ dispatcher: admin, address, method: 'GET', path: '/v1/join-tokens' });
  await admin.close();
  return {
    child,
    token,
    managerToken: (JSON.parse(tokens.body) as { manager: string }).manager,
    address,
    dataDir: join(dir, 'm'),
    rootPem,
    adminTls,
    memory() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
      return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
    },
    async stop() {
      clearTimeout(killer);
      child.kill('SIGTERM');
      await new Promise((resolve) => child.on('exit', resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Three managers on this machine that run their own etcd members. */
export interface ManagedCluster {
  /** The founder (`init --store etcd`): the manager the benchmark loads. */
  founder: ManagerProcess;
  /** Process IDs of the three managers, the founder first, and of their etcd members in the same order. */
  managerPids: number[];
  memberPids: number[];
  /** Stops the managers (their members stop with them); says which member processes had to be killed after all. */
  stop(): Promise<{ leftRunning: number[] }>;
}

/** The etcd member a managed manager runs: its child process (setpriv execs etcd, so the child is the member). */
function memberPidOf(managerPid: number): number {
  const children = readdirSync(`/proc/${managerPid}/task`).flatMap((tid) =>
    readFileSync(`/proc/${managerPid}/task/${tid}/children`, 'utf8')
      .trim()
      .split(' ')
      .filter((s) => s !== '')
      .map(Number),
  );
  const member = children.find((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'etcd');
  if (member === undefined) throw new Error(`manager ${managerPid} runs no etcd member`);
  return member;
}

/** Whether a process still runs (a zombie does not). */
function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Founds a managed store as test/e2e/managed-store.test.ts does: `init --store
 * etcd` and two manager-token joins (`--token-file`, so the token is in no
 * process's arguments), all on 127.0.0.1 with free ports, and waits until
 * etcd has three voting members.
 */
export async function startManagedCluster(scratch: string, options: { initArgs?: string[]; nodeArgs?: string[] } = {}): Promise<ManagedCluster> {
  const member = async (): Promise<string[]> => ['--etcd-client-addr', `127.0.0.1:${await freePort()}`, '--etcd-peer-addr', `127.0.0.1:${await freePort()}`];
  const founderMember = await member();
  const founder = await startManagerProcess({
    initArgs: ['--store', 'etcd', ...founderMember, ...(options.initArgs ?? [])],
    timeoutMs: 1_800_000,
    ...(options.nodeArgs === undefined ? {} : { nodeArgs: options.nodeArgs }),
  });
  const joined: ChildRun[] = [];
  const stopAll = async (): Promise<void> => {
    // Together: one at a time, the last two would wait on a store that lost its quorum.
    const killer = setTimeout(() => {
      for (const c of [founder.child, ...joined.map((j) => j.child)]) c.kill('SIGKILL');
    }, 30_000);
    await Promise.all([founder.stop(), ...joined.map((j) => j.stop('SIGTERM'))]);
    clearTimeout(killer);
  };
  try {
    const dir = mkdtempSync(join(scratch, 'managed-'));
    const file = (name: string, text: string): string => {
      writeFileSync(join(dir, name), text, { mode: 0o600 });
      return join(dir, name);
    };
    const tokenFile = file('manager.token', founder.managerToken);
    for (const name of ['m2', 'm3']) {
      const run = spawnMuster([
        'join',
        founder.address,
        '--token-file',
        tokenFile,
        '--data-dir',
        join(dir, name),
        '--listen-addr',
        `127.0.0.1:${await freePort()}`,
        '--advertise-addr',
        '127.0.0.1',
        ...(await member()),
        '--log-level',
        'warn',
      ]);
      joined.push(run);
      await run.waitFor(/This node joined cluster/, 120_000);
    }
    // A joined manager's member is a learner until it has caught up and promoted itself: measure three voters.
    const ctl = [
      '--endpoints',
      `https://${founderMember[1]}`,
      '--cacert',
      file('root.crt', founder.rootPem),
      '--cert',
      file('node.crt', founder.adminTls.certPem),
      '--key',
      file('node.key', founder.adminTls.keyPem),
      '--dial-timeout',
      '3s',
      '--command-timeout',
      '5s',
    ];
    const deadline = Date.now() + 120_000;
    for (;;) {
      const listed = spawnSync('etcdctl', [...ctl, 'member', 'list', '-w', 'json'], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
        timeout: 20_000,
      });
      const members = listed.status === 0 ? ((JSON.parse(listed.stdout) as { members?: { isLearner?: boolean; clientURLs?: string[] }[] }).members ?? []) : [];
      if (members.length === 3 && members.every((m) => m.isLearner !== true && (m.clientURLs ?? []).length > 0)) break;
      if (Date.now() > deadline) throw new Error(`etcd did not reach three voting members: ${listed.stdout}${listed.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  const managerPids = [founder.child.pid!, ...joined.map((j) => j.child.pid!)];
  const memberPids = managerPids.map(memberPidOf);
  return {
    founder,
    managerPids,
    memberPids,
    async stop() {
      await stopAll();
      // A member stops with its manager (SIGTERM), or dies with it (setpriv's parent-death signal): check, and kill what is left.
      const deadline = Date.now() + 10_000;
      while (memberPids.some(alive) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      const leftRunning = memberPids.filter(alive);
      for (const pid of leftRunning) process.kill(pid, 'SIGKILL');
      return { leftRunning };
    },
  };
}

/** One answer and how long it took. */
export interface Timed {
  status: number;
  body: string;
  ms: number;
}

/**
 * One request over a fresh connection, as a joining node makes it, through
 * muster's own transport. The dispatcher holds a TLS context made once:
 * building one per request (OpenSSL 3 re-parses the CA) would make the
 * client the bottleneck.
 */
export async function send(params: { dispatcher: Dispatcher; address: string; method: 'GET' | 'POST'; path: string; body?: string }): Promise<Timed> {
  const started = performance.now();
  try {
    const response = await transportSend({
      dispatcher: params.dispatcher,
      url: `https://${params.address}${params.path}`,
      method: params.method,
      ...(params.body === undefined ? {} : { body: Buffer.from(params.body) }),
      timeoutMs: 30_000,
      fresh: true,
    });
    return { status: response.status, body: response.body.toString('utf8'), ms: performance.now() - started };
  } catch (error) {
    return { status: 0, body: error instanceof Error ? error.message : String(error), ms: performance.now() - started };
  }
}

/** A dispatcher for benchmark clients: pins the root, presents `cert`/`key` when given, does not check names. */
export function benchDispatcher(tls: { rootPem: string; certPem?: string; keyPem?: string }): Dispatcher {
  return createDispatcher({
    tls: {
      ca: tls.rootPem,
      ...(tls.certPem === undefined || tls.keyPem === undefined ? {} : { cert: tls.certPem, key: tls.keyPem }),
      checkServerIdentity: () => undefined,
    },
    connections: 256,
  });
}

/** Runs `jobs` with at most `limit` in flight; results keep the jobs' order. */
export async function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array<T>(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, jobs.length) }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]!();
      }
    }),
  );
  return results;
}

/** The p-th percentile of `xs`. */
/** The runtime a benchmark ran on, printed first: figures differ between Node/OpenSSL versions. */
export function runtimeLine(): string {
  return `node ${process.version}, OpenSSL ${process.versions.openssl}`;
}

export function percentile(xs: readonly number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Prints one line per kind of request: count, errors, p50 and p99. */
export function report(name: string, rs: readonly Timed[]): void {
  const errors = rs.filter((r) => r.status !== 200);
  console.log(
    `${name.padEnd(9)} ${rs.length} requests, ${errors.length} errors, p50 ${percentile(
      rs.map((r) => r.ms),
      50,
    ).toFixed(0)} ms, p99 ${percentile(
      rs.map((r) => r.ms),
      99,
    ).toFixed(0)} ms`,
  );
  for (const e of errors.slice(0, 3)) console.log(`  error: ${e.status} ${e.body.slice(0, 200)}`);
}
