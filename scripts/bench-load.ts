/**
 * npm run bench:load — 2,000 joins and 2,000 renewals at the same time
 * against one manager running in its own process. Each request uses a fresh
 * TLS connection, as real nodes do; renewals authenticate with the node's
 * certificate. Prints errors (target: none), throughput, latency, and the
 * manager's RSS before, at peak and after.
 *
 *   npm run bench:load [-- --nodes 2000 --concurrency 64]
 */
import { parseArgs } from 'node:util';
import { createCsr } from '../src/pki/csr.js';
import { generateNodeKeySync } from '../src/pki/keys.js';
import { benchDispatcher, pool, report, send, startManagerProcess, runtimeLine } from './lib/load.js';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '64' } } });
const N = Number(values.nodes);
const C = Number(values.concurrency);

const manager = await startManagerProcess({ nodeArgs: process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : [] });
const { address, token, rootPem } = manager;
const anonymous = benchDispatcher({ rootPem });

console.log(runtimeLine());
console.log(`preparing ${2 * N} keys and CSRs…`);
const makeNode = () => {
  const key = generateNodeKeySync();
  return {
    keyPem: key.privateKeyPem,
    csr: createCsr({ privateKey: key.privateKey }),
    renewCsr: createCsr({ privateKey: generateNodeKeySync().privateKey }),
    context: anonymous,
  };
};
const existing = Array.from({ length: N }, makeNode);
const newcomers = Array.from({ length: N }, makeNode);

console.log(`joining ${N} nodes that will renew (setup)…`);
const setup = await pool(
  existing.map((n) => async () => {
    const r = await send({ dispatcher: anonymous, address, method: 'POST', path: '/v1/join', body: JSON.stringify({ token, csr: n.csr }) });
    if (r.status === 200) n.context = benchDispatcher({ rootPem, certPem: (JSON.parse(r.body) as { certificate: string }).certificate, keyPem: n.keyPem });
    return r.status;
  }),
  C,
);
if (setup.some((s) => s !== 200)) throw new Error(`setup joins failed: ${setup.filter((s) => s !== 200).length}`);

const before = manager.memory();
console.log(`now ${N} joins and ${N} renewals at once, ${C} in flight each…`);
const started = performance.now();
let peakRss = before.rss;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, manager.memory().rss)), 100);
const [joins, renewals] = await Promise.all([
  pool(
    newcomers.map((n) => () => send({ dispatcher: anonymous, address, method: 'POST', path: '/v1/join', body: JSON.stringify({ token, csr: n.csr }) })),
    C,
  ),
  pool(
    existing.map((n) => () => send({ dispatcher: n.context, address, method: 'POST', path: '/v1/renew', body: JSON.stringify({ csr: n.renewCsr }) })),
    C,
  ),
]);
const seconds = (performance.now() - started) / 1000;
clearInterval(sampler);
const after = manager.memory();

console.log(`\n${2 * N} requests in ${seconds.toFixed(1)} s: ${((2 * N) / seconds).toFixed(0)} requests/s with a fresh TLS connection each`);
report('joins', joins);
report('renewals', renewals);
console.log(
  `manager RSS: ${before.rss.toFixed(0)} MiB before, ${peakRss.toFixed(0)} MiB peak (sampled), ${after.rss.toFixed(0)} MiB after; high-water mark ${after.peak.toFixed(0)} MiB`,
);
await manager.stop();
process.exit([...joins, ...renewals].some((r) => r.status !== 200) ? 1 : 0);
