/**
 * Issue 17 end to end, with real processes, curl and openssl: scoped tokens
 * from the CLI, the public CRL and what it does to a removed manager posing
 * as a manager, Prometheus metrics (plain on --metrics-addr, mTLS on the API
 * port) parsed with a real parser, and the audit trail of a scripted session.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { faked, runMuster } from '../helpers/cli.js';
import { processScope } from '../helpers/processes.js';
import { curl } from '../helpers/curl.js';
import { freePort, startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { opensslStatus, scratchDir } from '../helpers/openssl.js';
import { parsePrometheus, sample } from '../helpers/prometheus.js';
import { slow } from '../helpers/slowdown.js';
import { story } from '../helpers/story.js';

const scratch = scratchDir('muster-obs-');
const servers: Server[] = [];
let etcd: EtcdCluster | undefined;
afterAll(async () => {
  for (const server of servers) server.close();
  await etcd?.stop();
  scratch.cleanup();
});
// Registered after the cleanup above, so it runs first: processes die before their store and files go.
const { running, start, joinNode: joinWith } = processScope();

const nodeIdOf = (dir: string): string => (JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8')) as { nodeId: string }).nodeId;

describe('one manager: scoped tokens, CRL, metrics, audit', () => {
  const { step } = story();
  const dirs = { m: scratch.path('m'), w1: scratch.path('w1'), w2: scratch.path('w2'), w3: scratch.path('w3'), alice: scratch.path('alice') };
  const auditFile = scratch.path('audit.log');
  let address = '';
  let metricsUrl = '';
  let scopedToken = '';

  step('init serves plain metrics on --metrics-addr; a scoped token admits exactly its uses, with its labels', { timeout: slow(60_000) }, async () => {
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const manager = start([
      'init',
      '--data-dir',
      dirs.m,
      '--listen-addr',
      '127.0.0.1:0',
      '--metrics-addr',
      `127.0.0.1:${metricsPort}`,
      '--audit-log',
      auditFile,
    ]);
    address = (await manager.waitFor(/muster join --token SWMTKN-1-\S+ (127\.0\.0\.1:\d+)/))[1]!;
    const before = parsePrometheus((await curl([metricsUrl])).body);
    expect(sample(before, 'muster_joins_total', { role: 'worker', result: 'ok' })).toBeUndefined();
    expect(before.get('muster_store_operation_duration_seconds')?.type).toBe('HISTOGRAM');

    const created = await runMuster(['join-token', 'create', 'worker', '--uses', '2', '--ttl', '1h', '--label', 'zone=eu-1', '-q', '--data-dir', dirs.m]);
    expect(created.code, created.stderr).toBe(0);
    scopedToken = created.stdout.trim();
    expect(scopedToken).toMatch(/^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/);
    await joinWith(dirs.w1, scopedToken, address, ['--label', 'zone=mine']);
    await joinWith(dirs.w2, scopedToken, address);
    const third = await runMuster(['join', address, '--data-dir', dirs.w3], { env: { MUSTER_TOKEN: scopedToken } });
    expect(third.code).toBe(1);
    expect(third.stderr).toMatch(/error: the join token was not accepted/);

    const inspect = await runMuster(['node', 'inspect', nodeIdOf(dirs.w1), '--data-dir', dirs.m]);
    const node = JSON.parse(inspect.stdout) as { labels: Record<string, string>; joinToken: string };
    expect(node.labels).toEqual({ zone: 'eu-1' });
    const ls = await runMuster(['join-token', 'ls', '--data-dir', dirs.m]);
    expect(ls.stdout).toMatch(new RegExp(`${node.joinToken}\\s+worker\\s+used\\s+0/2\\s+in \\d+ minutes\\s+zone=eu-1`));
    expect(ls.stdout).not.toContain(scopedToken.split('-').at(-1));

    const after = parsePrometheus((await curl([metricsUrl])).body);
    expect(sample(after, 'muster_joins_total', { role: 'worker', result: 'ok' })).toBe(2);
    expect(sample(after, 'muster_joins_total', { role: 'unknown', result: 'TOKEN_REJECTED' })).toBe(1);
    expect(sample(after, 'muster_request_failures_total', { code: 'TOKEN_REJECTED' })).toBeGreaterThanOrEqual(1);
    // (The parser drops a histogram's labels when `le` comes first, as prom-client writes it; only joins were timed so far.)
    expect(after.get('muster_issuance_duration_seconds')?.metrics[0]?.buckets?.['+Inf']).toBe('2');
    expect(sample(after, 'muster_nodes', { role: 'worker', status: 'ready' })).toBe(2);
    expect(sample(after, 'muster_nodes', { role: 'manager', status: 'ready' })).toBe(1);
    const soonest = sample(after, 'muster_node_certificate_soonest_expiry_timestamp_seconds')!;
    const w1Expiry = Date.parse(new X509Certificate(readFileSync(join(dirs.w1, 'certificates', 'node.crt'))).validTo) / 1000;
    expect(soonest).toBeLessThanOrEqual(w1Expiry);
    expect(Number(after.get('muster_store_operation_duration_seconds')?.metrics[0]?.buckets?.['+Inf'])).toBeGreaterThan(0);
  });

  step('/metrics on the API port takes manager and admin certificates, and refuses workers and strangers', { timeout: slow(30_000) }, async () => {
    const made = await runMuster(['ca', 'create-api-certificate', 'alice', '--out', dirs.alice, '--data-dir', dirs.m]);
    expect(made.code, made.stderr).toBe(0);
    const url = `https://${address}/metrics`;
    const asAlice = await curl(['--cacert', join(dirs.alice, 'ca.pem'), '--cert', join(dirs.alice, 'cert.pem'), '--key', join(dirs.alice, 'key.pem'), url]);
    expect(asAlice.status).toBe(200);
    expect(sample(parsePrometheus(asAlice.body), 'muster_joins_total', { role: 'worker', result: 'ok' })).toBe(2);
    const certs = join(dirs.w2, 'certificates');
    const asWorker = await curl(['--cacert', join(certs, 'root-ca.crt'), '--cert', join(certs, 'node.crt'), '--key', join(certs, 'node.key'), url]);
    expect(asWorker.status).toBe(403);
    expect(asWorker.json().code).toBe('AUTH_FORBIDDEN');
    expect((await curl(['--cacert', join(certs, 'root-ca.crt'), url])).status).toBe(401);
    expect((await curl([metricsUrl.replace('/metrics', '/v1/ca')])).status).toBe(404);
  });

  step('GET /v1/crl needs no certificate; after node rm and a user revocation it lists both, and openssl agrees', { timeout: slow(30_000) }, async () => {
    const w1 = nodeIdOf(dirs.w1);
    running[1]!.child.kill('SIGKILL'); // w1's daemon
    expect((await runMuster(['node', 'rm', '-f', w1, '--data-dir', dirs.m])).code).toBe(0);
    expect((await runMuster(['ca', 'revoke-api-certificate', 'alice', '--data-dir', dirs.m])).code).toBe(0);
    const der = scratch.path('crl.der');
    const fetched = await curl(['--cacert', join(dirs.m, 'certificates', 'root-ca.crt'), '-o', der, `https://${address}/v1/crl`]);
    expect(fetched.status).toBe(200);
    const root = join(dirs.m, 'certificates', 'root-ca.crt');
    expect(opensslStatus(['crl', '-inform', 'DER', '-in', der, '-CAfile', root, '-noout', '-verify']).output).toMatch(/verify OK/);
    const pem = scratch.path('crl.pem');
    writeFileSync(pem, (await curl(['--cacert', root, `https://${address}/v1/crl?format=pem`])).body);
    // An API user's cert.pem holds the admin CA after the leaf: it is the chain, and the admin CA's CRL is among the PEM ones.
    const check = (cert: string) => opensslStatus(['verify', '-crl_check', '-CAfile', root, '-CRLfile', pem, '-untrusted', cert, cert]);
    expect(check(join(dirs.w1, 'certificates', 'node.crt')).output).toMatch(/certificate revoked/);
    expect(check(join(dirs.alice, 'cert.pem')).output).toMatch(/certificate revoked/);
    expect(check(join(dirs.w2, 'certificates', 'node.crt')).status).toBe(0);
  });

  step('the audit file holds every action of the session with its caller, 0600, and no token or key', async () => {
    expect((await runMuster(['join-token', 'worker', '-q', '--data-dir', dirs.m])).code).toBe(0);
    expect((await runMuster(['join-token', '--rotate', 'worker', '--data-dir', dirs.m])).code).toBe(0);
    const id = (await runMuster(['join-token', 'ls', '-q', '--data-dir', dirs.m])).stdout.trim();
    expect((await runMuster(['join-token', 'rm', id, '--data-dir', dirs.m])).code).toBe(0);
    expect((await runMuster(['update', '--cert-expiry', '48h', '--data-dir', dirs.m])).code).toBe(0);

    expect(statSync(auditFile).mode & 0o777).toBe(0o600);
    const text = readFileSync(auditFile, 'utf8');
    expect(text).not.toMatch(/SWMTKN-1-/);
    expect(text).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
    const lines = text
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as { action: string; actor: Record<string, string>; result: string; code?: string; node?: string; serial?: string; serials?: string[] },
      );
    const managerId = nodeIdOf(dirs.m);
    const byManager = { cn: managerId, ou: 'swarm-manager' };
    const expectLine = (action: string, match: Record<string, unknown>) =>
      expect(
        lines.find((l) => l.action === action && Object.entries(match).every(([k, v]) => JSON.stringify(l[k as keyof typeof l]) === JSON.stringify(v))),
        action,
      ).toBeDefined();
    expectLine('join-token.create', { actor: byManager, result: 'ok' });
    const joins = lines.filter((l) => l.action === 'node.join');
    expect(joins.filter((l) => l.result === 'ok' && l.actor.token === id && typeof l.serial === 'string')).toHaveLength(2);
    expect(joins.filter((l) => l.result === 'error' && l.code === 'TOKEN_REJECTED')).toHaveLength(1);
    expectLine('user.create', { actor: byManager, result: 'ok' });
    expectLine('node.rm', { actor: byManager, node: nodeIdOf(dirs.w1), result: 'ok' });
    expectLine('user.revoke', { actor: byManager, result: 'ok' });
    expectLine('join-token.show', { actor: byManager, result: 'ok' });
    expectLine('join-token.rotate', { actor: byManager, result: 'ok' });
    expectLine('join-token.rm', { actor: byManager, result: 'ok' });
    expectLine('cluster.update', { actor: byManager, result: 'ok' });
    expect(lines.every((l) => typeof l.actor === 'object' && (l.actor.cn !== undefined || l.actor.token !== undefined))).toBe(true);
  });
});

describe('a removed manager posing as a manager', () => {
  it('is refused by a joining node before the token leaves: no CRL, or the CRL that lists it', { timeout: slow(90_000) }, async () => {
    etcd = await startEtcd();
    const f = scratch.path('ha-f');
    const m2 = scratch.path('ha-m2');
    const founder = start(['init', '--data-dir', f, '--listen-addr', '127.0.0.1:0', '--store', etcd.storeFlag]);
    const [, worker, address] = (await founder.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    const managerToken = (await runMuster(['join-token', '-q', 'manager', '--data-dir', f])).stdout.trim();
    const second = await joinWith(m2, managerToken, address, ['--listen-addr', '127.0.0.1:0']);
    await second.waitFor(/manager listening on/);
    // Keep what a disgruntled operator of m2 would keep, then remove m2.
    const certs = join(m2, 'certificates');
    const kept = { cert: readFileSync(join(certs, 'node.crt')), key: readFileSync(join(certs, 'node.key')), root: readFileSync(join(certs, 'root-ca.crt')) };
    expect(opensslStatus(['x509', '-in', join(certs, 'node.crt'), '-noout', '-ext', 'crlDistributionPoints']).output).toMatch(/URI:https:\/\//);
    second.child.kill('SIGKILL');
    const rm = await runMuster(['node', 'rm', '-f', nodeIdOf(m2), '--data-dir', f]);
    expect(rm.code, rm.stderr).toBe(0);
    const realCrl = scratch.path('real.crl');
    expect((await curl(['-k', '-o', realCrl, `https://${address}/v1/crl`])).status).toBe(200);

    // The impostor serves the real root (so the token's digest matches) with m2's still-valid manager certificate.
    let crlMode: 'none' | 'real' = 'none';
    const seen: string[] = [];
    const impostor = createServer({ cert: kept.cert, key: kept.key }, (request, response) => {
      seen.push(`${request.method} ${request.url}`);
      if (request.url === '/v1/ca') return void response.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(kept.root);
      if (request.url === '/v1/crl' && crlMode === 'real')
        return void response.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(readFileSync(realCrl));
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ statusCode: 404, code: 'CRL_UNAVAILABLE', message: 'no CRL here' }));
    });
    servers.push(impostor);
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    const fake = `127.0.0.1:${(impostor.address() as AddressInfo).port}`;

    const noCrl = await runMuster(['join', fake, '--data-dir', scratch.path('victim-1')], { env: { MUSTER_TOKEN: worker } });
    expect(noCrl.code).toBe(1);
    expect(noCrl.stderr).toMatch(/error: the manager at .* serves no CRL, though its certificate names one/);
    crlMode = 'real';
    const listed = await runMuster(['join', fake, '--data-dir', scratch.path('victim-2')], { env: { MUSTER_TOKEN: worker } });
    expect(listed.code).toBe(1);
    expect(listed.stderr).toMatch(/error: the server at .* presented a manager certificate that the cluster has revoked/);
    // The token never reached the impostor.
    expect(seen.filter((s) => !/^GET \/v1\/(ca|crl)$/.test(s))).toEqual([]);
    // A node whose clock runs two hours ahead finds even the real manager's CRL stale, and says what to check.
    const ahead = await runMuster(['join', address, '--data-dir', scratch.path('victim-3')], { env: { MUSTER_TOKEN: worker, ...faked('+2h') } });
    expect(ahead.code).toBe(1);
    expect(ahead.stderr).toMatch(
      /error: the CRL from .* is stale: its next update was due .*\nhint: a removed manager may be replaying an old CRL; or this machine's clock is ahead/,
    );
    // The real manager still admits the node.
    await joinWith(scratch.path('victim-4'), worker, address);
  });
});
