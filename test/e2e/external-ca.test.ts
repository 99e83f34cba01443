/**
 * An external CA over the cfssl protocol, against the real `cfssl serve`
 * (Debian's golang-cfssl, which .ci/run installs): the manager holds no CA
 * key; joins, renewals and API users are all signed by cfssl, and what comes
 * back is checked with openssl.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readCaRecord } from '../helpers/store-files.js';
import { startCfssl, type CfsslServer } from '../helpers/cfssl.js';
import { runInProcess, type InProcessRun } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { opensslStatus, x509Text } from '../helpers/openssl.js';
import { testScope } from '../helpers/scope.js';
import { story } from '../helpers/story.js';

const { scratch, dir, start, keep, running } = testScope('muster-extca-');
const signatures = (s: CfsslServer): number => (s.log().match(/signed certificate with serial number/g) ?? []).length;

it('cfssl is installed (.ci/run installs golang-cfssl)', () => {
  expect(execFileSync('cfssl', ['version'], { encoding: 'utf8' })).toMatch(/Version/);
});

describe('muster init --external-ca against cfssl serve', () => {
  const { step } = story();
  let cfssl: CfsslServer;
  let manager: InProcessRun;
  let address: string;
  const m = scratch.path('m');

  beforeAll(async () => {
    cfssl = keep(await startCfssl(dir('cfssl')));
    manager = start([
      'init',
      '--data-dir',
      m,
      '--listen-addr',
      '127.0.0.1:0',
      '--ca-cert',
      cfssl.rootFile,
      '--external-ca',
      `protocol=cfssl,url=${cfssl.url},cacert=${cfssl.rootFile}`,
    ]);
    address = (await manager.ready).address!;
  });

  it('holds no CA key; the manager certificate came from cfssl', async () => {
    expect(signatures(cfssl)).toBe(1);
    const managerCert = readFileSync(join(m, 'certificates', 'node.crt'), 'utf8');
    expect(x509Text(managerCert)).toMatch(/Issuer: O = Corp, CN = corp-root/);
    expect(readFileSync(join(m, 'certificates', 'root-ca.crt'), 'utf8')).toBe(cfssl.rootPem);
    await manager.stop();
    const ca = await readCaRecord(m);
    expect(ca?.key).toBeUndefined();
    expect(ca?.external?.map((e) => e.url)).toEqual([cfssl.url]);
    manager = start(['run', '--data-dir', m, '--listen-addr', address]);
    await manager.ready;
  });

  step('joins workers with certificates issued by the external root, with the right CN/OU/O', async () => {
    const token = /SWMTKN-1-\S+/.exec(manager.stdout())?.[0] ?? (await tokenFor('worker'));
    const clusterId = JSON.parse(readFileSync(join(m, 'node.json'), 'utf8')).clusterId as string;
    for (const [name, t, ou] of [
      ['w', token, 'swarm-worker'],
      ['w2', token, 'swarm-worker'],
    ] as const) {
      const nodeDir = scratch.path(name);
      const node = start(['join', '--token', t, address, '--data-dir', nodeDir]);
      const { nodeId } = await node.ready;
      const certFile = join(nodeDir, 'certificates', 'node.crt');
      expect(opensslStatus(['verify', '-CAfile', cfssl.rootFile, certFile]).status).toBe(0);
      const text = x509Text(readFileSync(certFile, 'utf8'));
      expect(text).toMatch(/Issuer: O = Corp, CN = corp-root/);
      expect(text).toMatch(new RegExp(`Subject: O = ${clusterId}, OU = ${ou}, CN = ${nodeId}`));
      expect(text).toMatch(new RegExp(`DNS:${ou}, DNS:${nodeId}`));
    }
  });

  step('renewal goes through cfssl too', async () => {
    const node = running.find((r) => /as a worker/.test(r.stdout()))!;
    const before = signatures(cfssl);
    node.renew();
    await node.waitFor(/renewed until/);
    expect(signatures(cfssl)).toBe(before + 1);
  });

  it("publishes no CRL (the root key is the CA's), and its certificates name none, so nodes join without one", async () => {
    const answer = await curl(['-k', `https://${address}/v1/crl`]);
    expect(answer.status).toBe(404);
    expect(answer.json().code).toBe('CRL_UNAVAILABLE');
    const certFile = join(m, 'certificates', 'node.crt');
    expect(opensslStatus(['x509', '-in', certFile, '-noout', '-ext', 'crlDistributionPoints']).output).not.toMatch(/URI:/);
  });

  it('API users are signed by cfssl with the client profile: clientAuth only', async () => {
    const out = scratch.path('alice');
    const run = runInProcess(['ca', 'create-api-certificate', 'alice', '--out', out, '--data-dir', m]);
    expect(await run.exit, run.stderr()).toBe(0);
    const text = x509Text(readFileSync(join(out, 'cert.pem'), 'utf8'));
    expect(text).toMatch(/OU = swarm-admin, CN = alice/);
    expect(text).toMatch(/TLS Web Client Authentication/);
    expect(text).not.toMatch(/TLS Web Server Authentication/);
  });

  it('a join that meets an unreachable CA retries; muster update --external-ca switches to a working one', async () => {
    const token = await tokenFor('worker');
    await cfssl.stop();
    const nodeDir = scratch.path('retrying');
    const node = start(['join', '--token', token, address, '--data-dir', nodeDir]);
    await node.waitFor(/the cluster's external CA could not be reached; attempt 1 of 5 failed, next attempt at /);
    expect(node.stderr() + node.stdout()).not.toContain(cfssl.url); // the CA's address is the cluster's business, not a joining node's
    const replacement = keep(await startCfssl(dir('cfssl-2'), { root: cfssl.root }));
    const update = runInProcess(['update', '--external-ca', `protocol=cfssl,url=${replacement.url},cacert=${replacement.rootFile}`, '--data-dir', m]);
    expect(await update.exit, update.stderr()).toBe(0);
    expect(update.stdout()).toBe(`External CAs set to ${replacement.url} (tried in that order).\n`);
    await node.ready;
    expect(opensslStatus(['verify', '-CAfile', cfssl.rootFile, join(nodeDir, 'certificates', 'node.crt')]).status).toBe(0);
    expect(signatures(replacement)).toBe(1);
  });

  async function tokenFor(role: string): Promise<string> {
    const run = runInProcess(['join-token', '-q', role, '--data-dir', m]);
    await run.exit;
    return run.stdout().trim();
  }
});

describe('cfssl with an auth key (authsign)', () => {
  const key = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
  let cfssl: CfsslServer;
  beforeAll(async () => {
    cfssl = keep(await startCfssl(dir('cfssl-auth'), { authKeyHex: key }));
  });

  it('signs when muster sends the right key', async () => {
    const run = start([
      'init',
      '--data-dir',
      scratch.path('auth-ok'),
      '--listen-addr',
      '127.0.0.1:0',
      '--ca-cert',
      cfssl.rootFile,
      '--external-ca',
      `protocol=cfssl,url=${cfssl.url},cacert=${cfssl.rootFile},authkey=${key}`,
    ]);
    await run.ready;
    expect(opensslStatus(['verify', '-CAfile', cfssl.rootFile, join(scratch.path('auth-ok'), 'certificates', 'node.crt')]).status).toBe(0);
  });

  it('a wrongly keyed request is refused by cfssl and muster says so', async () => {
    const wrong = 'ff'.repeat(32);
    const run = runInProcess([
      'init',
      '--data-dir',
      scratch.path('auth-bad'),
      '--listen-addr',
      '127.0.0.1:0',
      '--ca-cert',
      cfssl.rootFile,
      '--external-ca',
      `protocol=cfssl,url=${cfssl.url},cacert=${cfssl.rootFile},authkey=${wrong}`,
    ]);
    expect(await run.exit).toBe(1);
    expect(run.stderr()).toMatch(new RegExp(`error: the external CA at ${cfssl.url.replaceAll('.', '\\.')} refused to sign: invalid token`));
    expect(run.stderr()).not.toContain(wrong);
    expect(existsSync(join(scratch.path('auth-bad'), 'node.json'))).toBe(false);
  });

  it('an unauthenticated request is refused, with a hint to add authkey', async () => {
    const run = runInProcess([
      'init',
      '--data-dir',
      scratch.path('auth-none'),
      '--listen-addr',
      '127.0.0.1:0',
      '--ca-cert',
      cfssl.rootFile,
      '--external-ca',
      `protocol=cfssl,url=${cfssl.url},cacert=${cfssl.rootFile}`,
    ]);
    expect(await run.exit).toBe(1);
    expect(run.stderr()).toMatch(
      /answered HTTP 404 without a cfssl response\nhint: a cfssl server that requires authentication only serves \/api\/v1\/cfssl\/authsign: add authkey=HEX/,
    );
  });
});
