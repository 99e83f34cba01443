/**
 * The admin anchor end to end (issue 28 item 3): a manager (`muster init`,
 * real HTTPS on 127.0.0.1) issues API users through its admin CA; `muster ca
 * admin-anchor` writes the anchor; `openssl verify` and an `openssl s_server`
 * that trusts it alone admit an API user's folder and refuse a worker's and
 * a manager's certificate (curl as the client). API users renew their own
 * folder (`muster ca renew-api-certificate`), a revoked one cannot, and a
 * client command renews a folder near its expiry first (the CLI's clock is
 * injected).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock, type Clock } from '../../src/core/clock.js';
import { readPemBlocks } from '../../src/pki/der.js';
import { runInProcess, type InProcessRun } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { startNginx } from '../helpers/nginx.js';
import { opensslFixtures, opensslStatus, scratchDir } from '../helpers/openssl.js';
import { story } from '../helpers/story.js';

const scratch = scratchDir('muster-e2e-anchor-');
const dataDir = scratch.path('manager');
const certs = join(dataDir, 'certificates');
const root = join(certs, 'root-ca.crt');
/** The manager's clock: real time at start, moved only by tests (curl and openssl use real time). */
const clock = new FakeClock(Date.now());
let manager: InProcessRun;
let address = '';
let workerToken = '';
let fx: ReturnType<typeof opensslFixtures>;

beforeAll(async () => {
  fx = opensslFixtures(scratch);
  manager = runInProcess(['init', '--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--cert-expiry', '720h'], { clock });
  address = (await manager.ready).address ?? '';
  workerToken = /muster join --token (SWMTKN-1-\S+) /.exec(manager.stdout())?.[1] ?? '';
});

afterAll(async () => {
  await manager?.stop();
  scratch.cleanup();
});

/** Runs `muster ARGV` in-process to its end. */
async function cli(argv: string[], options: { env?: Record<string, string>; clock?: Clock } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const run = runInProcess(argv, options);
  const code = await run.exit;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/** An API user's folder, made by the manager's own CLI. */
async function apiUser(name: string, extra: string[] = []): Promise<{ dir: string; cert: string; key: string; ca: string }> {
  const dir = scratch.path(name);
  const made = await cli(['ca', 'create-api-certificate', name, '--out', dir, '--data-dir', dataDir, ...extra]);
  expect(made.code, made.stderr).toBe(0);
  return { dir, cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem'), ca: join(dir, 'ca.pem') };
}

/** A worker's certificate and key, joined with an openssl-made CSR. */
async function worker(): Promise<{ cert: string; key: string }> {
  const key = fx.key('ec:P-256');
  const res = await curl(
    ['--cacert', root, '-X', 'POST', '-H', 'content-type: application/json', '--data-binary', '@-', `https://${address}/v1/join`],
    JSON.stringify({ token: workerToken, csr: fx.csr(key), hostname: 'w1' }),
  );
  expect(res.status, res.body).toBe(200);
  return { cert: scratch.write('worker.crt', String(res.json().certificate)), key };
}

const manager_ = { cert: join(certs, 'node.crt'), key: join(certs, 'node.key') };
const verifyWith = (anchor: string, cert: string, extra: string[] = []) => opensslStatus(['verify', ...extra, '-CAfile', anchor, '-untrusted', cert, cert]);
const serialOf = (file: string): string => new X509Certificate(readFileSync(file)).serialNumber;
const notAfterOf = (file: string): number => Date.parse(new X509Certificate(readFileSync(file)).validTo);

describe('the admin anchor', () => {
  const { step } = story();
  let anchor = '';
  let alice: Awaited<ReturnType<typeof apiUser>>;
  let w: { cert: string; key: string };

  beforeAll(async () => {
    alice = await apiUser('alice');
    w = await worker();
    anchor = scratch.path('admin-anchor.pem');
  });

  step('muster ca admin-anchor --out writes what GET /v1/ca/admin serves to anyone: the admin CA, self-signed', async () => {
    const wrote = await cli(['ca', 'admin-anchor', '--out', anchor, '--data-dir', dataDir]);
    expect(wrote.code, wrote.stderr).toBe(0);
    expect(wrote.stdout).toContain(`Wrote the admin anchor to ${anchor}.`);
    expect(statSync(anchor).mode & 0o777).toBe(0o644);
    const served = await curl(['--cacert', root, `https://${address}/v1/ca/admin`]);
    expect(served.status).toBe(200);
    expect(served.body).toBe(readFileSync(anchor, 'utf8'));
    expect(opensslStatus(['x509', '-in', anchor, '-noout', '-subject', '-issuer']).output).toMatch(
      /subject=O = \w+, CN = muster admin CA\nissuer=O = \w+, CN = muster admin CA/,
    );
    // The folder's cert.pem holds the leaf and the admin CA under the root: clients present the whole chain.
    expect(readPemBlocks(readFileSync(alice.cert, 'utf8'))).toHaveLength(2);
  });

  step(
    "openssl verify with the anchor admits the API user's cert.pem and refuses a worker's and a manager's certificate (with and without -partial_chain)",
    () => {
      for (const extra of [[], ['-partial_chain']]) {
        const admitted = verifyWith(anchor, alice.cert, extra);
        expect(admitted.status, admitted.output).toBe(0);
        expect(verifyWith(anchor, w.cert, extra).status).not.toBe(0);
        expect(verifyWith(anchor, manager_.cert, extra).status).not.toBe(0);
      }
      // The cluster root still admits all three: the anchor is what tells them apart.
      for (const cert of [alice.cert, w.cert, manager_.cert]) expect(verifyWith(root, cert).status).toBe(0);
    },
  );

  step(
    "an openssl s_server anchored on it admits the API user (curl --cert) and refuses the worker; muster's API accepts the API user",
    {
      timeout: 30_000,
    },
    async () => {
      const server: ChildProcess = spawn(
        'openssl',
        ['s_server', '-accept', '127.0.0.1:0', '-cert', manager_.cert, '-key', manager_.key, '-Verify', '1', '-verify_return_error', '-CAfile', anchor, '-www'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      try {
        const port = await new Promise<string>((resolve, reject) => {
          let text = '';
          server.stdout!.on('data', (chunk: Buffer) => {
            text += chunk.toString();
            const found = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(text);
            if (found) resolve(found[1]!);
          });
          server.on('exit', () => reject(new Error(`openssl s_server exited: ${text}`)));
        });
        const url = `https://127.0.0.1:${port}/`;
        const admitted = await curl(['--cacert', root, '--cert', alice.cert, '--key', alice.key, url]);
        expect(admitted.status, admitted.stderr).toBe(200);
        const refused = await curl(['--cacert', root, '--cert', w.cert, '--key', w.key, url]);
        expect(refused.status).toBe(0); // no HTTP answer: the handshake failed
        expect(refused.exitCode).not.toBe(0);
        const again = await curl(['--cacert', root, '--cert', alice.cert, '--key', alice.key, url]);
        expect(again.status).toBe(200);
      } finally {
        server.kill();
      }
      const api = await curl(['--cacert', alice.ca, '--cert', alice.cert, '--key', alice.key, `https://${address}/v1/nodes`]);
      expect(api.status, api.body).toBe(200);
    },
  );

  step(
    'nginx with the anchor alone as ssl_client_certificate (depth 1, ssl_crl from /v1/crl?format=pem) admits the API user and refuses a worker and a revoked user',
    {
      timeout: 60_000,
    },
    async () => {
      const erin = await apiUser('erin');
      expect((await cli(['ca', 'revoke-api-certificate', 'erin', '--data-dir', dataDir])).code).toBe(0);
      const fetched = await curl(['--cacert', root, `https://${address}/v1/crl?format=pem`]);
      expect(fetched.status).toBe(200);
      const nginx = await startNginx(scratch.path('nginx'), { clientCa: anchor, crl: scratch.write('crl.pem', fetched.body), verifyDepth: 1 });
      try {
        const as = (c: { cert: string; key: string }) => curl(['--cacert', nginx.serverCert, '--cert', c.cert, '--key', c.key, nginx.url]);
        const admitted = await as(alice);
        expect(admitted.status, nginx.log()).toBe(200);
        expect(admitted.body).toMatch(/CN=alice/);
        expect((await as(w)).status).toBe(400);
        expect((await as(erin)).status).toBe(400);
        expect(nginx.log()).toMatch(/certificate revoked/);
      } finally {
        await nginx.stop();
      }
    },
  );
});

describe('API users renew their own certificate', () => {
  it('renew-api-certificate --cert-path replaces the folder: same name, a new key, a later expiry; the new certificate works', async () => {
    const bob = await apiUser('bob', ['--expiry', '2h']);
    const [serial, notAfter, keyBefore] = [serialOf(bob.cert), notAfterOf(bob.cert), readFileSync(bob.key, 'utf8')];
    clock.advance(10 * 60_000);
    const renewed = await cli(['ca', 'renew-api-certificate', '--cert-path', bob.dir], { env: { MUSTER_HOST: address } });
    expect(renewed.code, renewed.stderr).toBe(0);
    expect(renewed.stdout).toMatch(/^Renewed the certificate of API user bob in \S+: valid until \S+\. /);
    expect(serialOf(bob.cert)).not.toBe(serial);
    expect(new X509Certificate(readFileSync(bob.cert)).subject).toMatch(/OU=swarm-admin\nCN=bob$/);
    expect(notAfterOf(bob.cert)).toBe(notAfter + 10 * 60_000);
    expect(readFileSync(bob.key, 'utf8')).not.toBe(keyBefore);
    expect(statSync(bob.key).mode & 0o777).toBe(0o600);
    expect(new X509Certificate(readFileSync(bob.cert)).checkPrivateKey((await import('node:crypto')).createPrivateKey(readFileSync(bob.key)))).toBe(true);
    const api = await curl(['--cacert', bob.ca, '--cert', bob.cert, '--key', bob.key, `https://${address}/v1/nodes`]);
    expect(api.status).toBe(200);
    const audit = readFileSync(join(dataDir, 'manager', 'audit.log'), 'utf8');
    expect(audit).toMatch(new RegExp(`"action":"user.renew".*"serial":"${serialOf(bob.cert)}"`));
  });

  it('a revoked user cannot renew: 403 CERT_REVOKED, and the CLI says so and leaves the folder as it was', async () => {
    const carol = await apiUser('carol');
    expect((await cli(['ca', 'revoke-api-certificate', 'carol', '--data-dir', dataDir])).code).toBe(0);
    const key = fx.key('ec:P-256');
    const refused = await curl([
      '--cacert',
      carol.ca,
      '--cert',
      carol.cert,
      '--key',
      carol.key,
      '-X',
      'POST',
      '-H',
      'content-type: application/json',
      '--data-binary',
      JSON.stringify({ csr: fx.csr(key) }),
      `https://${address}/v1/users/renew`,
    ]);
    expect(refused.status).toBe(403);
    expect(refused.json().code).toBe('CERT_REVOKED');
    const before = readFileSync(carol.cert, 'utf8');
    const cliRefused = await cli(['ca', 'renew-api-certificate', '--cert-path', carol.dir, '--host', address]);
    expect(cliRefused.code).toBe(1);
    expect(cliRefused.stderr).toMatch(/^error: this API-user certificate has been revoked\n/);
    expect(readFileSync(carol.cert, 'utf8')).toBe(before);
    // A manager's certificate is no API user's: it has nothing to renew here.
    const asManager = await curl([
      '--cacert',
      root,
      '--cert',
      manager_.cert,
      '--key',
      manager_.key,
      '-X',
      'POST',
      '-H',
      'content-type: application/json',
      '--data-binary',
      JSON.stringify({ csr: fx.csr(key) }),
      `https://${address}/v1/users/renew`,
    ]);
    expect(asManager.status).toBe(403);
    expect(asManager.json().code).toBe('AUTH_FORBIDDEN');
  });

  it('a client command renews a MUSTER_CERT_PATH folder in the last third of its lifetime first, and not before', async () => {
    const dave = await apiUser('dave', ['--expiry', '3h']);
    const env = { MUSTER_HOST: address, MUSTER_CERT_PATH: dave.dir };
    const serial = serialOf(dave.cert);
    // Half way through its lifetime: used as it is.
    const early = await cli(['node', 'ls', '-q'], { env, clock: new FakeClock(Date.now() + 30 * 60_000) });
    expect(early.code, early.stderr).toBe(0);
    expect(early.stderr).toBe('');
    expect(serialOf(dave.cert)).toBe(serial);
    // Within the last third (the certificate was backdated an hour: 4h of lifetime, 80 minutes left).
    const notAfter = notAfterOf(dave.cert);
    const late = await cli(['node', 'ls', '-q'], { env, clock: new FakeClock(notAfter - 70 * 60_000) });
    expect(late.code, late.stderr).toBe(0);
    expect(late.stdout.trim().split('\n').length).toBeGreaterThan(0);
    expect(late.stderr).toMatch(/^Renewed the certificate of API user dave in \S+: it expired soon; the new one is valid until \S+\.\n$/);
    expect(serialOf(dave.cert)).not.toBe(serial);
    expect(new X509Certificate(readFileSync(dave.cert)).subject).toMatch(/CN=dave$/);
    expect(readPemBlocks(readFileSync(dave.cert, 'utf8'))).toHaveLength(2);
  });
});
