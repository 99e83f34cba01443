/**
 * Clients outside the cluster across a root rotation to a root of another
 * name (issue 26), with real curl, openssl and nginx: while the rotation
 * runs, nginx checking client certificates against the trust bundle and
 * the CRLs from /v1/crl (ssl_crl, which wants a CRL from the issuer of every
 * certificate of the chain) accepts a node certificate renewed under the new
 * root and a new API user, and refuses a revoked one; once it completed and
 * the manager renewed its certificate, an API user's folder made before the
 * rotation (ca.pem: the old root alone) still works with curl and
 * MUSTER_CERT_PATH, and with nginx.
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { readPemBlocks } from '../../src/pki/der.js';
import { runMuster, spawnMuster, type ChildRun } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { startNginx } from '../helpers/nginx.js';
import { corpRoot, openssl, opensslStatus, scratchDir } from '../helpers/openssl.js';
import { FAST_ENV, processScope, waitUntil } from '../helpers/processes.js';
import { slow } from '../helpers/slowdown.js';
import { story } from '../helpers/story.js';

const scratch = scratchDir('muster-rot-clients-');
afterAll(() => scratch.cleanup());
// A worker stopped with SIGSTOP holds the rotation open: the manager waits for nodes that are up, and it counts one as down only after 10 minutes of silence.
const FAST = { ...FAST_ENV, MUSTER_NODE_DOWN_AFTER: '10m' };
// Registered after the cleanup above, so it runs first: processes die before their files go.
const { running, start, joinNode } = processScope(FAST);

/** The issuer line openssl prints for the first certificate of a file. */
const issuerOf = (file: string): string => opensslStatus(['x509', '-in', file, '-noout', '-issuer']).output;
/** The CRLs of a PEM file, as openssl reads their issuers. */
const crlIssuers = (pem: string): string[] =>
  readPemBlocks(pem)
    .filter((b) => b.label === 'X509 CRL')
    .map((b) => openssl(['crl', '-inform', 'DER', '-noout', '-issuer'], b.der).trim());

describe('API users and CRL-checking services across a rotation to a root of another name', () => {
  const { step } = story();
  const m = scratch.path('m');
  const w1 = scratch.path('w1');
  const alice = scratch.path('alice'); // made before the rotation
  const bob = scratch.path('bob'); // made during it
  const carol = scratch.path('carol'); // made during it, then revoked
  const corpKey = scratch.path('corp.key');
  const corpCert = scratch.path('corp.pem');
  let manager: ChildRun;
  let held: ChildRun;
  let rotate: ChildRun;
  let address = '';
  let oldRootFile = '';

  /** curl against an nginx with a client certificate folder's cert.pem and key.pem. */
  const asUser = (url: string, serverCert: string, dir: string) =>
    curl(['--cacert', serverCert, '--cert', join(dir, 'cert.pem'), '--key', join(dir, 'key.pem'), url]);

  step(
    'while it runs, nginx with ssl_crl from /v1/crl accepts a node renewed under the new root, a new API user and an old one, and refuses a revoked one',
    {
      timeout: slow(120_000),
    },
    async () => {
      manager = start(['init', '--data-dir', m, '--listen-addr', '127.0.0.1:0']);
      const [, token, addr] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
      address = addr;
      await joinNode(w1, token, address);
      held = await joinNode(scratch.path('w2'), token, address);
      const made = await runMuster(['ca', 'create-api-certificate', 'alice', '--out', alice, '--data-dir', m]);
      expect(made.code, made.stderr).toBe(0);
      oldRootFile = scratch.write('old-root.pem', readFileSync(join(m, 'certificates', 'root-ca.crt')));

      corpRoot(corpKey, corpCert);
      held.child.kill('SIGSTOP'); // w2 neither polls nor renews: the rotation waits for it
      rotate = spawnMuster(['ca', '--rotate', '--ca-cert', corpCert, '--ca-key', corpKey, '--data-dir', m], { env: FAST });
      running.push(rotate);
      await rotate.waitFor(/desired root digest: sha256:[0-9a-f]{64}/);
      const w1Cert = join(w1, 'certificates', 'node.crt');
      await waitUntil('w1 renewed under the new root', () => /CN = corp-root/.test(issuerOf(w1Cert)));
      for (const [name, dir] of [
        ['bob', bob],
        ['carol', carol],
      ] as const) {
        const user = await runMuster(['ca', 'create-api-certificate', name, '--out', dir, '--data-dir', m]);
        expect(user.code, user.stderr).toBe(0);
      }
      expect((await runMuster(['ca', 'revoke-api-certificate', 'carol', '--data-dir', m])).code).toBe(0);
      expect(await Promise.race([rotate.exit, 'running'])).toBe('running');

      // What a service is given: the trust bundle (both roots while the rotation runs) and the CRLs.
      const bundle = scratch.write('bundle-during.pem', readFileSync(join(w1, 'certificates', 'root-ca.crt')));
      expect(readPemBlocks(readFileSync(bundle, 'utf8'))).toHaveLength(2);
      const fetched = await curl(['--cacert', oldRootFile, `https://${address}/v1/crl?format=pem`]);
      expect(fetched.status, fetched.stderr).toBe(200);
      const crlFile = scratch.write('crl-during.pem', fetched.body);
      // A node certificate is two files the agent replaces one after the other: copy a matching pair.
      const nodeDir = scratch.path('w1-tls');
      mkdirSync(nodeDir);
      copyFileSync(w1Cert, join(nodeDir, 'cert.pem'));
      copyFileSync(join(w1, 'certificates', 'node.key'), join(nodeDir, 'key.pem'));

      const nginx = await startNginx(scratch.path('nginx-during'), { clientCa: bundle, crl: crlFile, verifyDepth: 2 });
      try {
        const node = await asUser(nginx.url, nginx.serverCert, nodeDir);
        expect(node.status, nginx.log()).toBe(200);
        expect(node.body).toMatch(/OU=swarm-worker/);
        const newUser = await asUser(nginx.url, nginx.serverCert, bob);
        expect(newUser.status, nginx.log()).toBe(200);
        expect(newUser.body).toMatch(/CN=bob/);
        expect((await asUser(nginx.url, nginx.serverCert, alice)).status, nginx.log()).toBe(200);
        expect((await asUser(nginx.url, nginx.serverCert, carol)).status).toBe(400);
        expect(nginx.log()).toMatch(/certificate revoked/);
      } finally {
        await nginx.stop();
      }

      // openssl agrees: each chain, with the CRL of every certificate in it.
      const verify = (dir: string) =>
        opensslStatus(['verify', '-crl_check_all', '-CAfile', bundle, '-CRLfile', crlFile, '-untrusted', join(dir, 'cert.pem'), join(dir, 'cert.pem')]);
      for (const dir of [nodeDir, bob, alice]) expect(verify(dir).status, verify(dir).output).toBe(0);
      expect(verify(carol).output).toMatch(/certificate revoked/);
      // One CRL per root, the current (old) root's first.
      expect(crlIssuers(fetched.body)).toEqual([
        expect.stringMatching(/^issuer=O = \w+, CN = swarm-ca$/),
        'issuer=O = Corp, CN = corp-root',
        expect.stringMatching(/^issuer=O = \w+, CN = muster admin CA$/),
      ]);
      // Each certificate names its issuer's CRL, and that CRL is served there.
      const point = /URI:(https:\S+)/.exec(opensslStatus(['x509', '-in', w1Cert, '-noout', '-ext', 'crlDistributionPoints']).output)?.[1];
      expect(point).toMatch(new RegExp(`^https://${address}/v1/crl/[0-9a-f]{40}$`));
      const own = await curl(['--cacert', oldRootFile, `${point!}?format=pem`]);
      expect(own.status).toBe(200);
      expect(crlIssuers(own.body)).toEqual(['issuer=O = Corp, CN = corp-root']);
    },
  );

  step(
    'once it completed and the manager renewed, a folder made before it works with curl and MUSTER_CERT_PATH; ca --rotate said until when',
    {
      timeout: slow(120_000),
    },
    async () => {
      held.child.kill('SIGCONT');
      expect(await rotate.exit, rotate.stderr()).toBe(0);
      expect(rotate.stdout()).toContain(readFileSync(corpCert, 'utf8'));

      // The manager renews its own certificate (SIGHUP): under the new root alone now.
      const renewals = (): number => (manager.stderr().match(/renewed until/g) ?? []).length;
      const before = renewals();
      manager.child.kill('SIGHUP');
      await waitUntil('the manager renewed', () => renewals() > before);
      const managerCert = join(m, 'certificates', 'node.crt');
      expect(readPemBlocks(readFileSync(managerCert, 'utf8'))).toHaveLength(1);
      expect(issuerOf(managerCert)).toMatch(/CN = corp-root/);

      // alice's folder: ca.pem holds only the old root, cert.pem a certificate under it.
      expect(readPemBlocks(readFileSync(join(alice, 'ca.pem'), 'utf8'))).toHaveLength(1);
      const withCurl = await curl([
        '--cacert',
        join(alice, 'ca.pem'),
        '--cert',
        join(alice, 'cert.pem'),
        '--key',
        join(alice, 'key.pem'),
        `https://${address}/v1/nodes`,
      ]);
      expect(withCurl.status, withCurl.stderr).toBe(200);
      const ls = await runMuster(['node', 'ls', '-q'], { env: { MUSTER_HOST: address, MUSTER_CERT_PATH: alice } });
      expect(ls.code, ls.stderr).toBe(0);
      expect(ls.stdout.trim().split('\n')).toHaveLength(3);
      // A client holding only the new root verifies the manager as well.
      const newRootOnly = await curl(['--cacert', corpCert, '--cert', join(bob, 'cert.pem'), '--key', join(bob, 'key.pem'), `https://${address}/v1/nodes`]);
      expect(newRootOnly.status, newRootOnly.stderr).toBe(200);

      // What the manager sends: its certificate and the cross-signed copy; and it asks for client certificates under either root.
      const sClient = opensslStatus(['s_client', '-connect', address, '-tls1_2', '-showcerts', '-verify_return_error', '-CAfile', oldRootFile]);
      expect(sClient.output).toMatch(/Verify return code: 0 \(ok\)/);
      expect(sClient.output).toMatch(/Acceptable client certificate CA names\n(.*\n)*?O = Corp, CN = corp-root\n/);
      expect(sClient.output).toMatch(/Acceptable client certificate CA names\n(.*\n)*?O = \w+, CN = swarm-ca\n/);
      expect(sClient.output).toMatch(/ 1 s:O = Corp, CN = corp-root\n\s+i:O = \w+, CN = swarm-ca\n/);

      // ca --rotate said how and until when: on stderr, as stdout ends with the new root.
      const until =
        /API users: folders made before this rotation \(their ca\.pem holds only the old root\) keep working until (\S+)\.\nGive each user a new folder before then:\n {4}muster ca create-api-certificate NAME --out NEW_DIR\n/.exec(
          rotate.stderr(),
        )?.[1];
      expect(Date.parse(until!)).toBeGreaterThan(Date.now());
    },
  );

  step(
    'after it, nginx with ssl_crl still accepts the folder made before it: the old root signs its CRL until its certificates expire',
    {
      timeout: slow(60_000),
    },
    async () => {
      const fetched = await curl(['--cacert', corpCert, `https://${address}/v1/crl?format=pem`]);
      expect(fetched.status, fetched.stderr).toBe(200);
      const crlFile = scratch.write('crl-after.pem', fetched.body);
      const bundle = scratch.write('bundle-after.pem', `${readFileSync(corpCert, 'utf8')}${readFileSync(oldRootFile, 'utf8')}`);
      const nginx = await startNginx(scratch.path('nginx-after'), { clientCa: bundle, crl: crlFile, verifyDepth: 2 });
      try {
        expect((await asUser(nginx.url, nginx.serverCert, alice)).status, nginx.log()).toBe(200);
        expect((await asUser(nginx.url, nginx.serverCert, bob)).status, nginx.log()).toBe(200);
        expect((await asUser(nginx.url, nginx.serverCert, carol)).status).toBe(400);
      } finally {
        await nginx.stop();
      }
      // The new root's CRL first (nodes check it), then the old root's, signed with its kept key.
      expect(crlIssuers(fetched.body)).toEqual([
        'issuer=O = Corp, CN = corp-root',
        expect.stringMatching(/^issuer=O = \w+, CN = swarm-ca$/),
        expect.stringMatching(/^issuer=O = \w+, CN = muster admin CA$/),
      ]);
    },
  );
});
