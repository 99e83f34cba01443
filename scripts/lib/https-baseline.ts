/**
 * The floor for the join benchmark: a bare `node:https` server with the TLS
 * settings of muster's API (certificate requested, no CA list, TLS 1.2+) that
 * reads the body and answers a fixed JSON about the size of a join response.
 * No routing, no validation, no crypto beyond the handshake, no store: what
 * any Node HTTPS service pays per fresh connection on this machine. A
 * request with `?wait=N` is answered after N seconds (the floor of a long
 * poll, for bench:idle).
 *
 * Given a CA's certificate and key too, it also does the cryptography every
 * join needs and nothing else: reads the CSR, imports its key and checks its
 * signature (muster's parseCsr), and signs a certificate for it (muster's
 * issueCertificate): the floor of a join before any store, routing or
 * validation.
 *
 *   node --import tsx scripts/lib/https-baseline.ts CERT KEY [CA_CERT CA_KEY]   (prints its port)
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { systemClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { loadSigningCa } from '../../src/pki/ca.js';
import { parseCsr } from '../../src/pki/csr.js';
import { issueCertificate } from '../../src/pki/issue.js';

const [certFile, keyFile, caCertFile, caKeyFile] = process.argv.slice(2);
if (certFile === undefined || keyFile === undefined) {
  console.error('usage: https-baseline.ts CERT KEY');
  process.exit(2);
}
const ca =
  caCertFile === undefined || caKeyFile === undefined
    ? undefined
    : loadSigningCa({ certPem: readFileSync(caCertFile, 'utf8'), keyPem: readFileSync(caKeyFile, 'utf8') });
/** With a CA: the CSR of a `{csr}` body checked and signed, as the answer; otherwise undefined. */
function signed(chunks: Buffer[]): string | undefined {
  if (ca === undefined) return undefined;
  const { csr } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { csr: string };
  const issued = issueCertificate({
    ca,
    csr: parseCsr(csr),
    role: 'worker',
    commonName: 'floor-node',
    clusterId: 'benchfloor000000000000000',
    hosts: [],
    validityMs: 86_400_000,
    clock: systemClock,
    random: systemRandom,
  });
  return JSON.stringify({ certificate: issued.certPem, rootCA: ca.certPem, renewAfter: new Date().toISOString() });
}
const answer = JSON.stringify({ certificate: 'x'.repeat(900), rootCA: 'y'.repeat(700), renewAfter: new Date().toISOString() });
const server = createServer(
  { cert: readFileSync(certFile), key: readFileSync(keyFile), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
  (req, res) => {
    const wait = Number(/[?&]wait=(\d+)/.exec(req.url ?? '')?.[1] ?? 0);
    if (wait > 0) req.socket.setTimeout(0);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () =>
      setTimeout(
        () => res.writeHead(200, { 'content-type': 'application/json' }).end(wait > 0 ? '{"renewNow":false}' : (signed(chunks) ?? answer)),
        wait * 1000,
      ),
    );
  },
);
server.keepAliveTimeout = 5_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(typeof address === 'object' && address !== null ? address.port : 0);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
