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
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { parseArgs } from 'node:util';
import { createCsr } from '../src/pki/csr.js';
import { generateNodeKeySync } from '../src/pki/keys.js';
import { startCfssl } from '../test/helpers/cfssl.js';
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
const cfsslServer = await startCfssl(dir); // a throwaway root, TLS on loopback, the default profile
const cfsslContext = createSecureContext({ ca: cfsslServer.rootPem });
const address = cfsslServer.url.replace('https://', '');
started = performance.now();
const signs: Timed[] = await pool(csrs.map((csr) => () => send({ address, method: 'POST', path: '/api/v1/cfssl/sign', body: JSON.stringify({ certificate_request: csr }), secureContext: cfsslContext, servername: 'localhost' })), C);
const cfsslSeconds = (performance.now() - started) / 1000;
const cfsslRate = signs.filter((s) => s.status === 200).length / cfsslSeconds;
await cfsslServer.stop();
rmSync(dir, { recursive: true, force: true });
console.log(`\ncfssl serve: ${N} signs, concurrency ${C}, fresh TLS each: ${cfsslRate.toFixed(0)} signs/s`);
report('signs', signs);
console.log(`\nratio muster/cfssl: ${(musterRate / cfsslRate).toFixed(2)} (p50 ${percentile(joins.map((j) => j.ms), 50).toFixed(0)} vs ${percentile(signs.map((s) => s.ms), 50).toFixed(0)} ms)`);
process.exit(joins.some((j) => j.status !== 200) ? 1 : 0);
