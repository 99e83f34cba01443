/**
 * npm run bench:pki — issuances per second on one core (CSR parse + verify
 * + build + sign + PEM), next to bare native P-256 signatures per second in
 * the same run. Target: >= 3,000 issuances/s, stated for machines that sign
 * ~31,000 times/s natively; the target scaled to this machine's own signing
 * rate is printed too. Also prints the crypto floor measured in the same
 * run: importing the CSR's key, verifying its signature and signing the
 * certificate, which no issuance on Node's crypto can skip.
 *
 *   npm run bench:pki [-- --csrs 2000 --seconds 3]
 */
import { createPublicKey, sign, verify } from 'node:crypto';
import { parseArgs } from 'node:util';
import { systemClock } from '../src/core/clock.js';
import { systemRandom } from '../src/core/random.js';
import { createRootCa, loadSigningCa } from '../src/pki/ca.js';
import { createCsr, parseCsr } from '../src/pki/csr.js';
import { issueCertificate } from '../src/pki/issue.js';
import { generateNodeKeySync } from '../src/pki/keys.js';

const { values } = parseArgs({ options: { csrs: { type: 'string', default: '2000' }, seconds: { type: 'string', default: '3' } } });
const csrCount = Number(values.csrs);
const seconds = Number(values.seconds);

const ca = loadSigningCa(createRootCa({ clusterId: 'benchcluster0000000000000', clock: systemClock, random: systemRandom }));
const csrs = Array.from({ length: csrCount }, () => createCsr({ privateKey: generateNodeKeySync().privateKey }));

/** Runs `fn` repeatedly for `seconds` (after a short warm-up) and returns calls per second. */
function rate(fn: (i: number) => void): number {
  for (let i = 0; i < 200; i++) fn(i);
  const deadline = performance.now() + seconds * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < deadline) {
    for (let k = 0; k < 50; k++) fn(n++);
  }
  return n / ((performance.now() - start) / 1000);
}

const tbsLike = Buffer.alloc(400, 7);
const signs = rate(() => {
  sign('sha256', tbsLike, ca.key);
});
const issuances = rate((i) => {
  const csr = parseCsr(csrs[i % csrs.length]);
  issueCertificate({
    ca,
    csr,
    role: 'worker',
    commonName: 'a1b2c3d4e5f6g7h8i9j0k1l2m',
    clusterId: 'benchcluster0000000000000',
    validityMs: 90 * 86_400_000,
    clock: systemClock,
    random: systemRandom,
  });
});
const parses = rate((i) => {
  parseCsr(csrs[i % csrs.length]);
});
// The floor: the three native calls every issuance makes, on the same inputs.
const natives = csrs.map((pem) => {
  const spki = parseCsr(pem).spki;
  const jwk = createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ format: 'jwk' });
  const info = Buffer.alloc(300, 1);
  return { jwk, info, signature: sign('sha256', info, generateNodeKeySync().privateKey) };
});
const floor = rate((i) => {
  const n = natives[i % natives.length]!;
  const key = createPublicKey({ key: n.jwk, format: 'jwk' });
  verify('sha256', n.info, key, n.signature); // false: signed by another key, the same work
  sign('sha256', tbsLike, ca.key);
});

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
console.log(`node ${process.version}, one core, ${csrCount} distinct CSRs, ${seconds}s per measurement`);
const line = (label: string, value: number, note = ''): void => console.log(`${label.padEnd(44)} ${fmt(value).padStart(7)}${note}`);
line('native P-256 signatures/s', signs);
line('CSR parse+verify/s', parses);
line('crypto floor/s (key import+verify+sign)', floor);
line(
  'issuances/s (parse+verify+build+sign+PEM)',
  issuances,
  `  (${((issuances / signs) * 100).toFixed(1)}% of bare signing, ${((issuances / floor) * 100).toFixed(0)}% of the crypto floor)`,
);
console.log(`target >= 3,000/s on a machine signing ~31,000/s (9.7%); scaled to this machine's ${fmt(signs)} signs/s: >= ${fmt((3000 * signs) / 31_000)}/s`);
