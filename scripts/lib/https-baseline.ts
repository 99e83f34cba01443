/**
 * The floor for the join benchmark: a bare `node:https` server with the TLS
 * settings of muster's API (certificate requested, no CA list, TLS 1.2+) that
 * reads the body and answers a fixed JSON about the size of a join response.
 * No routing, no validation, no crypto beyond the handshake, no store: what
 * any Node HTTPS service pays per fresh connection on this machine. A
 * request with `?wait=N` is answered after N seconds (the floor of a long
 * poll, for bench:idle).
 *
 *   node --import tsx scripts/lib/https-baseline.ts CERT KEY   (prints its port)
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

const [certFile, keyFile] = process.argv.slice(2);
if (certFile === undefined || keyFile === undefined) {
  console.error('usage: https-baseline.ts CERT KEY');
  process.exit(2);
}
const answer = JSON.stringify({ certificate: 'x'.repeat(900), rootCA: 'y'.repeat(700), renewAfter: new Date().toISOString() });
const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, (req, res) => {
  req.resume();
  const wait = Number(/[?&]wait=(\d+)/.exec(req.url ?? '')?.[1] ?? 0);
  if (wait > 0) req.socket.setTimeout(0);
  req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(wait > 0 ? '{"renewNow":false}' : answer), wait * 1000));
});
server.keepAliveTimeout = 5_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(typeof address === 'object' && address !== null ? address.port : 0);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
