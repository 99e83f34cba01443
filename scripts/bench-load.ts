/**
 * npm run bench:load — 2,000 joins and 2,000 renewals at the same time
 * against one manager running in its own process (so its memory is its
 * own). Each request uses a fresh TLS connection, as real nodes do; renewals
 * authenticate with the node's certificate. Prints errors (target: none),
 * throughput, latency, and the manager's RSS before, at peak and after.
 *
 *   npm run bench:load [-- --nodes 2000 --concurrency 64]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createCsr } from '../src/pki/csr.js';
import { generateNodeKeySync } from '../src/pki/keys.js';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '64' } } });
const N = Number(values.nodes);
const C = Number(values.concurrency);
const dir = mkdtempSync(join(tmpdir(), 'muster-bench-load-'));

const manager = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : []), 'dist/cli/main.js', 'init', '--data-dir', join(dir, 'm'), '--listen-addr', '127.0.0.1:0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
const killTimer = setTimeout(() => {
  console.error('bench-load: giving up after 10 minutes');
  manager.kill('SIGKILL');
  process.exit(1);
}, 600_000);
const printed = await new Promise<string>((resolve, reject) => {
  let out = '';
  manager.stdout.on('data', (d: Buffer) => {
    out += d.toString('utf8');
    if (/muster join --token \S+ \S+/.test(out)) resolve(out);
  });
  manager.on('exit', () => reject(new Error(`manager exited:\n${out}`)));
});
const [, token, address] = /muster join --token (\S+) (\S+)/.exec(printed)!;
const [host, port] = address!.split(':');
const rootPem = readFileSync(join(dir, 'm', 'certificates', 'root-ca.crt'), 'utf8');

/** VmRSS / VmHWM of the manager, in MiB. */
function memory(): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${manager.pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

// One TLS context per identity, made once: building one per request (OpenSSL 3 parses the CA each time) would make
// the load generator, not the manager, the bottleneck.
const anonymous = createSecureContext({ ca: rootPem });

function post(path: string, body: string, secureContext: SecureContext = anonymous): Promise<{ status: number; body: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const options: RequestOptions & { secureContext: SecureContext } = { host, port: Number(port), method: 'POST', path, secureContext, servername: 'swarm-manager', checkServerIdentity: () => undefined, agent: false, headers: { 'content-type': 'application/json' }, timeout: 30_000 };
    const req = request(options, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, ms: performance.now() - started }));
    });
    req.on('error', (e) => resolve({ status: 0, body: e.message, ms: performance.now() - started }));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

/** Runs `jobs` with at most `limit` in flight. */
async function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]!();
    }
  }));
  return results;
}

const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? 0;

console.log(`preparing ${2 * N} keys and CSRs…`);
const makeNode = () => {
  const key = generateNodeKeySync();
  return { keyPem: key.privateKeyPem, csr: createCsr({ privateKey: key.privateKey }), renewCsr: createCsr({ privateKey: generateNodeKeySync().privateKey }), context: anonymous };
};
const existing = Array.from({ length: N }, makeNode);
const newcomers = Array.from({ length: N }, makeNode);

console.log(`joining ${N} nodes that will renew (setup)…`);
const setup = await pool(existing.map((n) => async () => {
  const r = await post('/v1/join', JSON.stringify({ token, csr: n.csr }));
  if (r.status === 200) n.context = createSecureContext({ ca: rootPem, cert: (JSON.parse(r.body) as { certificate: string }).certificate, key: n.keyPem });
  return r.status;
}), C);
if (setup.some((s) => s !== 200)) throw new Error(`setup joins failed: ${setup.filter((s) => s !== 200).length}`);

const before = memory();
console.log(`now ${N} joins and ${N} renewals at once, ${C} in flight each…`);
const started = performance.now();
let peakRss = before.rss;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, memory().rss)), 100);
const [joins, renewals] = await Promise.all([
  pool(newcomers.map((n) => () => post('/v1/join', JSON.stringify({ token, csr: n.csr }))), C),
  pool(existing.map((n) => () => post('/v1/renew', JSON.stringify({ csr: n.renewCsr }), n.context)), C),
]);
const seconds = (performance.now() - started) / 1000;
clearInterval(sampler);
const after = memory();

const report = (name: string, rs: { status: number; body: string; ms: number }[]): void => {
  const errors = rs.filter((r) => r.status !== 200);
  console.log(`${name.padEnd(9)} ${rs.length} requests, ${errors.length} errors, p50 ${pct(rs.map((r) => r.ms), 50).toFixed(0)} ms, p99 ${pct(rs.map((r) => r.ms), 99).toFixed(0)} ms`);
  for (const e of errors.slice(0, 3)) console.log(`  error: ${e.status} ${e.body.slice(0, 200)}`);
};
console.log(`\n${2 * N} requests in ${seconds.toFixed(1)} s: ${((2 * N) / seconds).toFixed(0)} requests/s with a fresh TLS connection each`);
report('joins', joins);
report('renewals', renewals);
console.log(`manager RSS: ${before.rss.toFixed(0)} MiB before, ${peakRss.toFixed(0)} MiB peak (sampled), ${after.rss.toFixed(0)} MiB after; high-water mark ${after.peak.toFixed(0)} MiB`);

clearTimeout(killTimer);
manager.kill('SIGTERM');
await new Promise((resolve) => manager.on('exit', resolve));
rmSync(dir, { recursive: true, force: true });
const failed = [...joins, ...renewals].some((r) => r.status !== 200);
process.exit(failed ? 1 : 0);
