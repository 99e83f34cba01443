/**
 * npm run bench:nodes — listing 100,000 nodes. One worker token once made
 * 66,000 nodes, and the unpaged list answered 500 (a string over V8's
 * limit). This founds a manager in its own process, notes its idle RSS (the
 * floor), stops it and writes the node and certificate records straight into
 * its LevelDB store (joins over HTTPS run at ~500/s), starts it again with
 * `muster run`, then pages through GET /v1/nodes with the manager's own
 * certificate and runs the real `muster node ls -q | wc -l`. Prints the
 * nodes seen, pages, seconds, and the manager's RSS before and its peak
 * (VmHWM, reset before each run) while paging.
 *
 *   npm run bench:nodes [-- --nodes 100000]     (BENCH_NODE_ARGS: node flags for the manager, as in bench:load)
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ApiClient } from '../src/api/client.js';
import { NODES_PAGE } from '../src/api/schemas.js';
import { dataDirLayout } from '../src/config/paths.js';
import { newId } from '../src/core/ids.js';
import { systemRandom } from '../src/core/random.js';
import { randomSerial, serialHex } from '../src/pki/certificate.js';
import { KEYS } from '../src/store/cluster-store.js';
import { LevelStore } from '../src/store/level-store.js';
import { SCHEMA_VERSION, type CertificateRecord, type NodeRecord } from '../src/store/records.js';
import { startManagerProcess, runtimeLine } from './lib/load.js';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '100000' } } });
const N = Number(values.nodes);
const DAY = 86_400_000;
const MiB = (n: number): string => `${n.toFixed(0)} MiB`;

/** VmRSS and VmHWM of a process, in MiB. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** Resets VmHWM to the current RSS (Linux: clear_refs 5), so the peak read later is the peak of what follows. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** One worker as a join writes it: the node record and the record of its certificate. */
function workerRecords(i: number, now: number): [NodeRecord, CertificateRecord] {
  const id = newId(systemRandom);
  const serial = serialHex(randomSerial(systemRandom));
  const notAfter = Math.floor((now + 90 * DAY) / 1000) * 1000;
  const node: NodeRecord = {
    schema: SCHEMA_VERSION,
    id,
    role: 'worker',
    hostname: `bench-${i}`,
    labels: {},
    createdAt: now,
    lastSeenAt: now,
    certSerial: serial,
    certNotAfter: notAfter,
    certRole: 'worker',
    removed: false,
  };
  const cert: CertificateRecord = {
    schema: SCHEMA_VERSION,
    serial,
    subject: id,
    role: 'worker',
    kind: 'join',
    issuedAt: now,
    notBefore: now - 3_600_000,
    notAfter,
  };
  return [node, cert];
}

const nodeArgs = process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : [];
const founder = await startManagerProcess({ nodeArgs, timeoutMs: 30 * 60_000 });
const { address, rootPem } = founder;
const args = founder.child.spawnargs;
const dataDir = args[args.indexOf('--data-dir') + 1]!;
const layout = dataDirLayout(dataDir);
const tls = {
  rootPem,
  certPem: readFileSync(join(layout.certificatesDir, 'node.crt'), 'utf8'),
  keyPem: readFileSync(join(layout.certificatesDir, 'node.key'), 'utf8'),
};

// The floor: the idle manager, after one listing (so the route and TLS code are loaded), before the records.
const warmup = new ApiClient({ managers: [address], tls });
await warmup.call('listNodes');
await warmup.close();
await new Promise((resolve) => setTimeout(resolve, 2_000));
const floor = founder.memory();
founder.child.kill('SIGTERM');
await once(founder.child, 'exit');

console.log(runtimeLine());
console.log(`writing ${N.toLocaleString('en')} node and certificate records into ${layout.dbDir}…`);
let started = performance.now();
const store = await LevelStore.openDir(layout.dbDir, { create: false });
const now = Date.now();
for (let i = 0; i < N; i += 1000) {
  const puts = Array.from({ length: Math.min(1000, N - i) }, (_, j) => workerRecords(i + j, now)).flatMap(([node, cert]) => [
    { key: KEYS.nodes.ref(node.id).key, value: node },
    { key: KEYS.certificates.ref(cert.serial).key, value: cert },
  ]);
  if (!(await store.commit({ compares: [], puts, deletes: [] }))) throw new Error('writing the records failed');
}
await store.close();
console.log(`  ${((performance.now() - started) / 1000).toFixed(1)} s`);

const manager = spawn(process.execPath, [...nodeArgs, 'dist/cli/main.js', 'run', '--data-dir', dataDir, '--listen-addr', address, '--log-level', 'warn'], {
  stdio: ['ignore', 'ignore', 'inherit'],
});
const pid = manager.pid!;
const client = new ApiClient({ managers: [address], tls });
for (let tries = 0; ; tries++) {
  try {
    if ((await client.health()).status === 'ok') break;
  } catch (error) {
    if (tries > 300) throw error;
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
}
await new Promise((resolve) => setTimeout(resolve, 2_000));

const before = memoryOf(pid);
const resettable = resetPeak(pid);
started = performance.now();
let seen = 0;
let pages = 0;
for await (const page of client.nodePages({ pageSize: NODES_PAGE.max })) {
  seen += page.length;
  pages += 1;
}
const apiSeconds = (performance.now() - started) / 1000;
const apiPeak = memoryOf(pid).peak;
await client.close();

resetPeak(pid);
started = performance.now();
const cli = spawn('bash', ['-c', `'${process.execPath}' dist/cli/main.js node ls -q --data-dir '${dataDir}' | wc -l`], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let lines = '';
cli.stdout.on('data', (d: Buffer) => (lines += d.toString('utf8')));
await once(cli, 'exit');
const cliSeconds = (performance.now() - started) / 1000;
const cliPeak = memoryOf(pid).peak;

const count = (n: number): string => n.toLocaleString('en');
console.log(
  `\nGET /v1/nodes, pages of ${NODES_PAGE.max}: ${count(seen)} nodes in ${count(pages)} pages, ${apiSeconds.toFixed(1)} s (${count(Math.round(seen / apiSeconds))} nodes/s)`,
);
console.log(`muster node ls -q | wc -l (pages of ${NODES_PAGE.default}): ${count(Number(lines.trim()))} lines, ${cliSeconds.toFixed(1)} s`);
console.log(
  `manager RSS: ${MiB(floor.rss)} idle before the records (floor); with ${count(N)} more nodes ${MiB(before.rss)} before paging, ` +
    `peak ${MiB(apiPeak)} while the API was paged and ${MiB(cliPeak)} during node ls${resettable ? '' : ' (VmHWM could not be reset: peaks include the start)'}`,
);

manager.kill('SIGTERM');
await once(manager, 'exit');
rmSync(dirname(dataDir), { recursive: true, force: true });
process.exit(seen === N + 1 && Number(lines.trim()) === N + 1 ? 0 : 1);
