/**
 * Root CA rotation with real processes (issue 18): a manager and five
 * workers, `muster ca --rotate` with its progress, joins and admin calls
 * while it runs, every node ending on a certificate that openssl accepts
 * against the new root alone, a worker that was stopped throughout catching
 * up, the old token refused and the new one pinning the new root; then a
 * rotation to an openssl-made root; then two managers on etcd.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rootDigest } from '../../src/pki/ca.js';
import { readBundle } from '../../src/pki/peer.js';
import { parseJoinToken } from '../../src/token/join-token.js';
import { runMuster, spawnMuster, type ChildRun } from '../helpers/cli.js';
import { FAST_ENV, processScope, waitUntil } from '../helpers/processes.js';
import { startCfssl } from '../helpers/cfssl.js';
import { curl } from '../helpers/curl.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { corpRoot, opensslStatus, scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';
import { story } from '../helpers/story.js';

const scratch = scratchDir('muster-rot-');
// Nodes poll every second; the manager counts a node silent for 10 s (scaled by MUSTER_TEST_SLOWDOWN) as down, and
// does not wait for it. The first rotation cannot end before then (w4 and w5 are stopped just before it): that is the
// window for the join with the old token "while it runs" (3 s was too short beside four CPU burners: the rotation
// ended before the joining process had asked for the root).
const FAST = { ...FAST_ENV, MUSTER_NODE_DOWN_AFTER: `${Math.round(slow(10_000) / 1000)}s` };
let etcd: EtcdCluster | undefined;
afterAll(async () => {
  await etcd?.stop();
  scratch.cleanup();
});
// Registered after the cleanup above, so it runs first (vitest runs after-hooks last in, first out): processes die before their store and files go.
const { running, start, joinNode } = processScope(FAST);

/** Whether the node's certificate verifies against `rootFile` alone (no intermediates). */
const verifiesAgainst = (dir: string, rootFile: string): boolean =>
  opensslStatus(['verify', '-CAfile', rootFile, join(dir, 'certificates', 'node.crt')]).status === 0;

describe('root rotation on the embedded store', () => {
  const { step } = story();
  const m = scratch.path('m');
  const workers = [1, 2, 3, 4, 5].map((i) => scratch.path(`w${i}`));
  let address = '';
  let oldToken = '';
  const daemons: ChildRun[] = [];

  step('rotates a manager and five workers while joins and admin calls go on; a worker stopped throughout catches up', { timeout: slow(120_000) }, async () => {
    const manager = start(['init', '--data-dir', m, '--listen-addr', '127.0.0.1:0']);
    [, oldToken, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    for (const dir of workers) daemons.push(await joinNode(dir, oldToken, address));
    const oldRootFile = scratch.write('old-root.pem', readFileSync(join(m, 'certificates', 'root-ca.crt')));
    await daemons[4]!.stop('SIGTERM'); // w5 sleeps through the rotation
    await daemons[3]!.stop('SIGTERM'); // and w4, until the manager has renewed again after it

    const rotate = spawnMuster(['ca', '--rotate', '--data-dir', m], { env: FAST });
    running.push(rotate);
    await rotate.waitFor(/desired root digest: sha256:[0-9a-f]{64}/);
    // While it runs: a join with the (old) token and admin calls work.
    const during = await joinNode(scratch.path('w6'), oldToken, address);
    daemons.push(during);
    expect((await runMuster(['node', 'ls', '-q', '--data-dir', m])).code).toBe(0);
    expect(await rotate.exit).toBe(0);
    const out = rotate.stdout();
    expect(out).toMatch(/^desired root digest: sha256:([0-9a-f]{64})\n/);
    expect(out).toMatch(/\n {2}rotated TLS certificates: (\d+)\/\1 nodes\n {2}rotated CA certificates: \1\/\1 nodes\n-----BEGIN CERTIFICATE-----\n/);
    const newRootPem = out.slice(out.indexOf('-----BEGIN CERTIFICATE-----'));
    const target = /desired root digest: sha256:([0-9a-f]{64})/.exec(out)![1]!;
    expect(rootDigest(newRootPem).toString('hex')).toBe(target);
    const newRootFile = scratch.write('new-root.pem', newRootPem);
    expect((await runMuster(['ca', '--data-dir', m])).stdout).toBe(newRootPem);

    // Every running node ends on the new root alone (their trust bundles drop the old one at their next poll).
    const live = [m, ...workers.slice(0, 3), scratch.path('w6')];
    await waitUntil('every running node verifies against the new root and trusts it alone', () =>
      live.every((dir) => verifiesAgainst(dir, newRootFile) && readFileSync(join(dir, 'certificates', 'root-ca.crt'), 'utf8') === newRootPem),
    );
    for (const dir of live) expect(verifiesAgainst(dir, oldRootFile)).toBe(false);
    // No renewal failed anywhere.
    for (const daemon of daemons) expect(daemon.stderr()).not.toMatch(/renewal failed|"level":"error"/);

    // The old token is refused; the new one pins the new root and keeps the secret.
    const newToken = (await runMuster(['join-token', '-q', 'worker', '--data-dir', m])).stdout.trim();
    expect(parseJoinToken(newToken).digest.equals(rootDigest(newRootPem))).toBe(true);
    expect(parseJoinToken(newToken).secret.equals(parseJoinToken(oldToken).secret)).toBe(true);
    const refused = await runMuster(['join', address, '--data-dir', scratch.path('late')], { env: { MUSTER_TOKEN: oldToken } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/does not match the join token/);

    // w5 comes back: the old root vouches for the new one (cross-signed), and it renews with its old certificate.
    const back = start(['run', '--data-dir', workers[4]!]);
    await back.waitFor(/the root this node holds vouches for the new one/);
    await waitUntil('w5 renewed under the new root', () => verifiesAgainst(workers[4]!, newRootFile));

    // The manager renews once more (SIGHUP): its certificate no longer carries the cross-signed intermediate,
    // but the manager serves it with the cross-signed copy until every certificate of the old root has expired.
    const renewals = (): number => (manager.stderr().match(/renewed until/g) ?? []).length;
    const before = renewals();
    manager.child.kill('SIGHUP');
    await waitUntil('the manager renewed again', () => renewals() > before);
    expect(readBundle(readFileSync(join(m, 'certificates', 'node.crt'), 'utf8'))).toHaveLength(1);
    // w4 comes back holding only the old root: it verifies the manager through that copy, takes the new root, and renews.
    const w4 = start(['run', '--data-dir', workers[3]!]);
    await w4.waitFor(/the root this node holds vouches for the new one/);
    await waitUntil('w4 renewed under the new root', () => verifiesAgainst(workers[3]!, newRootFile));
    expect(w4.stderr()).not.toMatch(/cannot verify/);
  });

  step('rotates to a root made with openssl (--ca-cert/--ca-key), quietly', { timeout: slow(120_000) }, async () => {
    const key = scratch.path('corp.key');
    const cert = scratch.path('corp.pem');
    corpRoot(key, cert);
    const r = await runMuster(['ca', '--rotate', '--ca-cert', cert, '--ca-key', key, '-q', '--data-dir', m], { env: FAST });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(readFileSync(cert, 'utf8'));
    const live = [m, ...workers];
    await waitUntil('every node verifies against the openssl root', () => live.every((dir) => verifiesAgainst(dir, cert)));
    expect(opensslStatus(['x509', '-in', join(workers[0]!, 'certificates', 'node.crt'), '-noout', '-issuer']).output).toMatch(/O = Corp, CN = corp-root/);
    // The audit trail has both rotations.
    const audit = readFileSync(join(m, 'manager', 'audit.log'), 'utf8');
    expect(audit.match(/"action":"ca.rotate.complete"/g)).toHaveLength(2);
  });
});

describe('root rotation to an external CA', () => {
  it('moves a cluster that signs itself to a root whose key cfssl holds; cfssl signs from then on', { timeout: slow(120_000) }, async () => {
    const cfsslDir = scratch.path('cfssl');
    mkdirSync(cfsslDir);
    const cfssl = await startCfssl(cfsslDir);
    try {
      const m = scratch.path('x-m');
      const manager = start(['init', '--data-dir', m, '--listen-addr', '127.0.0.1:0']);
      const [, token, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
      const w = scratch.path('x-w');
      await joinNode(w, token, address);
      const r = await runMuster(
        ['ca', '--rotate', '--ca-cert', cfssl.rootFile, '--external-ca', `protocol=cfssl,url=${cfssl.url},cacert=${cfssl.rootFile}`, '-q', '--data-dir', m],
        { env: FAST },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(cfssl.rootPem);
      await waitUntil('both nodes verify against the cfssl root', () => [m, w].every((dir) => verifiesAgainst(dir, cfssl.rootFile)));
      expect((cfssl.log().match(/signed certificate with serial number/g) ?? []).length).toBeGreaterThanOrEqual(2);
      // The CRL goes with the key: an external CA's cluster publishes none.
      const crl = await curl(['-k', `https://${address}/v1/crl`]);
      expect(crl.status).toBe(404);
      expect(crl.json().code).toBe('CRL_UNAVAILABLE');
    } finally {
      await cfssl.stop();
    }
  });
});

describe('root rotation with two managers on etcd', () => {
  it('the leader completes it; both managers serve the new root; five workers through either follow', { timeout: slow(120_000) }, async () => {
    etcd = await startEtcd();
    const f = scratch.path('e-f');
    const founder = start(['init', '--data-dir', f, '--listen-addr', '127.0.0.1:0', '--store', etcd.storeFlag]);
    const [, worker, address] = (await founder.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    const managerToken = (await runMuster(['join-token', '-q', 'manager', '--data-dir', f])).stdout.trim();
    const m2 = scratch.path('e-m2');
    const second = await joinNode(m2, managerToken, address, ['--listen-addr', '127.0.0.1:0']);
    const m2Address = (await second.waitFor(/"advertise":"(127\.0\.0\.1:\d+)"/))[1]!;
    // Five workers, through either manager.
    const ws = [1, 2, 3, 4, 5].map((i) => scratch.path(`e-w${i}`));
    for (const [i, dir] of ws.entries()) await joinNode(dir, worker, i % 2 === 0 ? address : m2Address);

    const r = await runMuster(['ca', '--rotate', '--detach', '--data-dir', m2], { env: FAST });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/desired root digest: sha256:([0-9a-f]{64})/);
    const target = /sha256:([0-9a-f]{64})/.exec(r.stdout)![1]!;
    let root = '';
    await waitUntil('the rotation completed', () => {
      const pem = readFileSync(join(f, 'certificates', 'root-ca.crt'), 'utf8');
      if (rootDigest(pem).toString('hex') !== target) return false;
      root = pem;
      return true;
    });
    const rootFile = scratch.write('etcd-root.pem', root);
    await waitUntil('every node verifies against the new root', () => [f, m2, ...ws].every((dir) => verifiesAgainst(dir, rootFile)));
    expect((await runMuster(['ca', '--data-dir', f])).stdout).toBe(root);
    expect((await runMuster(['ca', '--data-dir', m2])).stdout).toBe(root);
  });
});
