/**
 * npm run bench:renew — 2,000 simulated agents with 1-hour certificates
 * against one manager. Each agent is a real Renewer on a shared fake clock;
 * each renewal is a real HTTPS request (fresh TLS connection, fresh key,
 * mTLS with the agent's current certificate). The fake clock walks through
 * 90 minutes in 5-second steps, so the schedule plays out as it would in an
 * hour and a half, and the manager sees the renewals that fall due in each
 * step at once.
 *
 * Prints peak and mean renewals per simulated second, how renewal moments
 * spread over the 50–80% window, the real time the manager needed, and RSS.
 *
 *   npm run bench:renew [-- --agents 2000 --minutes 90 --step 5]
 */
import { parseArgs } from 'node:util';
import { ApiClient } from '../src/api/client.js';
import { Renewer, type Validity } from '../src/agent/renewer.js';
import { FakeClock } from '../src/core/clock.js';
import { silentLogger } from '../src/core/logger.js';
import { systemRandom } from '../src/core/random.js';
import { createCsr } from '../src/pki/csr.js';
import { generateNodeKey } from '../src/pki/keys.js';
import { startBenchManager } from './lib/bench-manager.js';

const { values } = parseArgs({
  options: { agents: { type: 'string', default: '2000' }, minutes: { type: 'string', default: '90' }, step: { type: 'string', default: '5' } },
});
const AGENTS = Number(values.agents);
const SIM_MS = Number(values.minutes) * 60_000;
const STEP_MS = Number(values.step) * 1000;
const HOUR = 3_600_000;

const clock = new FakeClock(Date.now());
const manager = await startBenchManager({ clock, certExpiryMs: HOUR });
const { services, address } = manager;

console.log(`joining ${AGENTS} agents (in-process, not timed)…`);
const tokens = services.settings.joinTokens();
const start0 = clock.now();
const inFlight = new Set<Promise<unknown>>();
const renewedAt: number[] = []; // simulated time of each renewal
const fractions: number[] = []; // where in its certificate's lifetime each renewal happened
let failures = 0;

const renewers: Renewer[] = [];
for (let i = 0; i < AGENTS; i++) {
  const key = await generateNodeKey();
  const joined = await services.caServer.join(
    { token: tokens.worker, csr: createCsr({ privateKey: key.privateKey }) },
    `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`,
  );
  let tls = { rootPem: joined.rootCA, certPem: joined.certificate, keyPem: key.privateKeyPem };
  // Lifetime as issued (NotAfter - 1h); the 1h backdating is clock-skew slack, not lifetime.
  let validity: Validity = { notBefore: Date.parse(joined.notAfter) - HOUR, notAfter: Date.parse(joined.notAfter) };
  const renewer: Renewer = new Renewer({
    clock,
    random: systemRandom,
    logger: silentLogger,
    current: () => validity, // no Session: polling is not what this measures
    renew: (_reason) => {
      const work = (async () => {
        fractions.push((clock.now() - validity.notBefore) / (validity.notAfter - validity.notBefore));
        renewedAt.push(clock.now() - start0);
        const fresh = await generateNodeKey();
        const client = new ApiClient({ managers: [address], tls, fresh: true });
        try {
          const response = await client.call('renew', { body: { csr: createCsr({ privateKey: fresh.privateKey }) } });
          tls = { ...tls, certPem: response.certificate, keyPem: fresh.privateKeyPem };
          validity = { notBefore: Date.parse(response.notAfter) - HOUR, notAfter: Date.parse(response.notAfter) };
          return validity;
        } catch (error) {
          failures += 1;
          throw error;
        } finally {
          await client.close();
        }
      })();
      inFlight.add(work);
      void work.finally(() => inFlight.delete(work)).catch(() => undefined);
      return work;
    },
  });
  renewers.push(renewer);
}
for (const r of renewers) r.start();

console.log(`simulating ${SIM_MS / 60_000} minutes in ${STEP_MS / 1000}s steps against ${address}…`);
const rssBefore = process.memoryUsage().rss;
let peakRss = rssBefore;
let busiestStep = { count: 0, realMs: 0 };
const realStart = performance.now();
for (let t = 0; t < SIM_MS; t += STEP_MS) {
  const before = renewedAt.length;
  const stepStart = performance.now();
  clock.advance(STEP_MS);
  while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
  const count = renewedAt.length - before;
  const realMs = performance.now() - stepStart;
  if (count > busiestStep.count) busiestStep = { count, realMs };
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}
const realTotal = (performance.now() - realStart) / 1000;
await Promise.all(renewers.map((r) => r.stop()));
await manager.stop();

// Per simulated second and per simulated minute.
const perSecond = new Map<number, number>();
const perMinute = new Map<number, number>();
for (const at of renewedAt) {
  perSecond.set(Math.floor(at / 1000), (perSecond.get(Math.floor(at / 1000)) ?? 0) + 1);
  perMinute.set(Math.floor(at / 60_000), (perMinute.get(Math.floor(at / 60_000)) ?? 0) + 1);
}
const first = Math.min(...renewedAt);
const last = Math.max(...renewedAt);
const mean = renewedAt.length / Math.max(1, (last - first) / 1000);
const peakSecond = Math.max(...perSecond.values());
const peakMinute = Math.max(...perMinute.values()) / 60;

console.log(`\nagents ${AGENTS}, certificate lifetime 1h, simulated ${SIM_MS / 60_000} min, ${renewedAt.length} renewals, ${failures} failures`);
console.log(
  `renewals per simulated second: mean ${mean.toFixed(2)} (from first to last renewal), peak ${peakSecond} in one second, peak minute ${peakMinute.toFixed(2)}/s`,
);
console.log('where renewals fell in the certificate lifetime (window 50–80%):');
const bins = Array<number>(10).fill(0);
for (const f of fractions) bins[Math.min(9, Math.max(0, Math.floor(((f - 0.5) / 0.3) * 10)))]! += 1;
bins.forEach((n, i) => {
  const lo = (50 + i * 3).toString().padStart(2);
  console.log(`  ${lo}–${50 + (i + 1) * 3}%  ${String(n).padStart(5)}  ${'#'.repeat(Math.round((n / Math.max(1, fractions.length)) * 200))}`);
});
console.log(`outside the window: ${fractions.filter((f) => f < 0.5 || f > 0.8).length}`);
console.log(
  `busiest ${STEP_MS / 1000}s step: ${busiestStep.count} renewals served in ${busiestStep.realMs.toFixed(0)} ms real time (${((busiestStep.count / busiestStep.realMs) * 1000).toFixed(0)} renewals/s, fresh TLS each)`,
);
console.log(
  `real time for the whole simulation ${realTotal.toFixed(1)} s; RSS (manager and agents in one process) ${(rssBefore / 2 ** 20).toFixed(0)} MiB before, peak ${(peakRss / 2 ** 20).toFixed(0)} MiB`,
);
