/**
 * npm run bench:join — N distinct nodes with pre-made keys and CSRs join one
 * manager (its own process) with concurrency C and a fresh TLS connection
 * per join, as real nodes do. Prints joins/s, p50/p99 latency and the
 * manager's peak RSS. When `cfssl` is installed (Debian: golang-cfssl), the
 * same CSRs go to `cfssl serve` over TLS on loopback with a throwaway CA,
 * with fresh connections too, and the ratio is printed.
 *
 *   npm run bench:join [-- --nodes 2000 --concurrency 64 --cfssl auto|off]
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { parseArgs } from 'node:util';
import { createCsr } from '../src/pki/csr.js';
import { generateNodeKeySync } from '../src/pki/keys.js';
import { percentile, pool, report, send, startManagerProcess, type Timed } from './lib/load.js';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '64' }, cfssl: { type: 'string', default: 'auto' } } });
const N = Number(values.nodes);
const C = Number(values.concurrency);

console.log(`preparing ${N} keys and CSRs…`);
const csrs = Array.from({ length: N }, () => createCsr({ privateKey: generateNodeKeySync().privateKey }));

// --- muster
const manager = await startManagerProcess();
const context = createSecureContext({ ca: manager.rootPem });
const rssBefore = manager.memory().rss;
let started = performance.now();
const joins = await pool(csrs.map((csr) => () => send({ address: manager.address, method: 'POST', path: '/v1/join', body: JSON.stringify({ token: manager.token, csr }), secureContext: context })), C);
const musterSeconds = (performance.now() - started) / 1000;
const musterRate = joins.filter((j) => j.status === 200).length / musterSeconds;
const memory = manager.memory();
await manager.stop();
console.log(`\nmuster: ${N} joins, concurrency ${C}, fresh TLS each: ${musterRate.toFixed(0)} joins/s (target >= 1,000)`);
report('joins', joins);
console.log(`manager RSS ${rssBefore.toFixed(0)} MiB before, peak ${memory.peak.toFixed(0)} MiB`);

// --- cfssl serve, same CSRs
const hasCfssl = (() => {
  try {
    execFileSync('cfssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (values.cfssl === 'off' || !hasCfssl) {
  console.log(values.cfssl === 'off' ? '\ncfssl: skipped (--cfssl off)' : '\ncfssl: not installed, comparison skipped (apt-get install golang-cfssl)');
  process.exit(joins.some((j) => j.status !== 200) ? 1 : 0);
}

const dir = mkdtempSync(join(tmpdir(), 'muster-bench-cfssl-'));
const cfssl = (args: string[], input?: string): { cert: string; key: string } => JSON.parse(execFileSync('cfssl', args, { cwd: dir, input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] })) as { cert: string; key: string };
const ca = cfssl(['gencert', '-initca', '-'], JSON.stringify({ CN: 'bench-ca', key: { algo: 'ecdsa', size: 256 } }));
writeFileSync(join(dir, 'ca.pem'), ca.cert);
writeFileSync(join(dir, 'ca-key.pem'), ca.key);
writeFileSync(join(dir, 'config.json'), JSON.stringify({ signing: { default: { usages: ['signing', 'key encipherment', 'server auth', 'client auth'], expiry: '2160h' } } }));
const server = cfssl(['gencert', '-ca', 'ca.pem', '-ca-key', 'ca-key.pem', '-config', 'config.json', '-hostname', '127.0.0.1', '-'], JSON.stringify({ CN: '127.0.0.1', key: { algo: 'ecdsa', size: 256 } }));
writeFileSync(join(dir, 'server.pem'), server.cert);
writeFileSync(join(dir, 'server-key.pem'), server.key);
const port = await new Promise<number>((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const p = (probe.address() as { port: number }).port;
    probe.close(() => resolve(p));
  });
});
const serve = spawn('cfssl', ['serve', '-address', '127.0.0.1', '-port', String(port), '-ca', 'ca.pem', '-ca-key', 'ca-key.pem', '-config', 'config.json', '-tls-cert', 'server.pem', '-tls-key', 'server-key.pem', '-loglevel', '5'], { cwd: dir, stdio: 'ignore' });
const cfsslContext = createSecureContext({ ca: ca.cert });
const address = `127.0.0.1:${port}`;
for (let i = 0; i < 100; i++) {
  const probe = await send({ address, method: 'POST', path: '/api/v1/cfssl/sign', body: JSON.stringify({ certificate_request: csrs[0] }), secureContext: cfsslContext, servername: 'localhost' });
  if (probe.status === 200) break;
  await new Promise((resolve) => setTimeout(resolve, 100)); // cfssl has no readiness signal
}
started = performance.now();
const signs: Timed[] = await pool(csrs.map((csr) => () => send({ address, method: 'POST', path: '/api/v1/cfssl/sign', body: JSON.stringify({ certificate_request: csr }), secureContext: cfsslContext, servername: 'localhost' })), C);
const cfsslSeconds = (performance.now() - started) / 1000;
const cfsslRate = signs.filter((s) => s.status === 200).length / cfsslSeconds;
serve.kill('SIGTERM');
rmSync(dir, { recursive: true, force: true });
console.log(`\ncfssl serve: ${N} signs, concurrency ${C}, fresh TLS each: ${cfsslRate.toFixed(0)} signs/s`);
report('signs', signs);
console.log(`\nratio muster/cfssl: ${(musterRate / cfsslRate).toFixed(2)} (p50 ${percentile(joins.map((j) => j.ms), 50).toFixed(0)} vs ${percentile(signs.map((s) => s.ms), 50).toFixed(0)} ms)`);
process.exit(joins.some((j) => j.status !== 200) ? 1 : 0);
