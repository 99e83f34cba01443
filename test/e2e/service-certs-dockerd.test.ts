/**
 * The Docker Engine recipe of the README (issue 28, item 4), run with the
 * real programs: a worker node keeps a Docker service certificate for its
 * dockerd (Docker's TLS guide's daemon: --tlsverify, TCP on loopback), the
 * docker CLI reaches it with an API user's folder (DOCKER_TLS_VERIFY=1,
 * DOCKER_CERT_PATH), and dockerd refuses a worker's certificate and a
 * service certificate as clients: the daemon folder's ca.pem is the admin
 * anchor. After `muster update --cert-expiry 1h` the node renews, the hook
 * runs, and the restarted dockerd serves the new certificate.
 */
import { X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runMuster } from '../helpers/cli.js';
import { dockerCli, startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { scratchDir } from '../helpers/openssl.js';
import { eventually, processScope } from '../helpers/processes.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-dockerd-');
let dockerd: Dockerd | undefined;
afterAll(async () => {
  await dockerd?.stop();
  scratch.cleanup();
});
const { start } = processScope();

/** The certificate a TLS server presents on `address`, as openssl s_client sees it (verified against `caFile`). */
function served(address: string, caFile: string): X509Certificate {
  const run = spawnSync('openssl', ['s_client', '-connect', address, '-CAfile', caFile], { input: '', encoding: 'utf8', timeout: slow(20_000) });
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(run.stdout)?.[0];
  if (pem === undefined) throw new Error(`no certificate from ${address}:\n${run.stdout}\n${run.stderr}`);
  expect(run.stdout).toContain('Verify return code: 0 (ok)');
  return new X509Certificate(pem);
}

/** A DOCKER_CERT_PATH folder made of a certificate and key that are not an API user's, with the cluster's roots as ca.pem. */
function clientFolder(name: string, files: { ca: string; cert: string; key: string }): string {
  const dir = scratch.path(name);
  mkdirSync(dir, { recursive: true });
  copyFileSync(files.ca, join(dir, 'ca.pem'));
  copyFileSync(files.cert, join(dir, 'cert.pem'));
  copyFileSync(files.key, join(dir, 'key.pem'));
  return dir;
}

describe('recipe: Docker Engine served with a service certificate', () => {
  it("docker version with an API user's folder works; a worker's and a service certificate are refused as clients; after --cert-expiry 1h the hook has run and dockerd serves the new certificate", {
    timeout: slow(300_000),
  }, async () => {
    const m = scratch.path('m');
    const manager = start(['init', '--data-dir', m, '--listen-addr', '127.0.0.1:0']);
    const [, token, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    const w = scratch.path('w');
    const worker = start(['join', address, '--data-dir', w, '--advertise-addr', '127.0.0.1'], { MUSTER_TOKEN: token });
    await worker.waitFor(/This node joined cluster/);

    // On the worker: the daemon's certificate, named by its advertise address, and a hook that tells the test it ran.
    const tls = scratch.path('docker-tls');
    const marker = join(tls, 'hook-ran');
    const hook = `sh -c 'echo ran >> ${marker}'`;
    const add = await runMuster(['cert', 'add', 'dockerd', '--san', '127.0.0.1', '--layout', 'docker', '--out', tls, '--exec', hook, '--data-dir', w]);
    expect(add.code, add.stderr).toBe(0);
    for (const file of ['ca.pem', 'server-cert.pem', 'server-key.pem']) expect(existsSync(join(tls, file)), file).toBe(true);
    // The daemon folder's ca.pem is the admin anchor: what `muster ca admin-anchor` writes.
    const anchor = scratch.path('admin-anchor.pem');
    expect((await runMuster(['ca', 'admin-anchor', '--out', anchor, '--data-dir', m])).code).toBe(0);
    expect(readFileSync(join(tls, 'ca.pem'), 'utf8')).toBe(readFileSync(anchor, 'utf8'));

    const startDaemon = () =>
      startDockerd(scratch.path('dockerd'), { caFile: join(tls, 'ca.pem'), certFile: join(tls, 'server-cert.pem'), keyFile: join(tls, 'server-key.pem') });
    dockerd = await startDaemon();

    // An API user's folder as `muster ca create-api-certificate` writes it: DOCKER_CERT_PATH reads ca.pem, cert.pem, key.pem.
    const alice = scratch.path('alice');
    expect((await runMuster(['ca', 'create-api-certificate', 'alice', '--out', alice, '--data-dir', m])).code).toBe(0);
    const version = dockerCli(dockerd.address, alice, ['version', '--format', '{{.Server.Version}}']);
    expect(version.status, version.out).toBe(0);
    expect(version.out).toMatch(/^\d+\.\d+/);

    // A worker's own certificate, and a service certificate made for a client: chained to the root, not to the anchor.
    const roots = join(w, 'certificates', 'root-ca.crt');
    const asWorker = dockerCli(
      dockerd.address,
      clientFolder('as-worker', { ca: roots, cert: join(w, 'certificates', 'node.crt'), key: join(w, 'certificates', 'node.key') }),
      ['version'],
    );
    expect(asWorker.status).not.toBe(0);
    expect(asWorker.out).toMatch(/bad certificate|certificate required|unknown certificate authority|remote error: tls/i);
    const client = scratch.path('docker-client');
    expect((await runMuster(['cert', 'add', 'docker-client', '--client', '--layout', 'docker', '--out', client, '--data-dir', w])).code).toBe(0);
    const asService = dockerCli(dockerd.address, client, ['version']);
    expect(asService.status).not.toBe(0);
    expect(asService.out).toMatch(/bad certificate|certificate required|unknown certificate authority|remote error: tls/i);

    // A shorter expiry: every node renews now, its service certificates with it, and the hook runs once more.
    const before = served(dockerd.address, roots);
    expect(before.serialNumber).toBe(new X509Certificate(readFileSync(join(tls, 'server-cert.pem'))).serialNumber);
    const hookRuns = () => (existsSync(marker) ? readFileSync(marker, 'utf8').trim().split('\n').length : 0);
    const runsBefore = hookRuns();
    expect((await runMuster(['update', '--cert-expiry', '1h', '--data-dir', m])).code).toBe(0);
    await eventually('the hook to run after the renewal', async () => (hookRuns() > runsBefore ? true : undefined), slow(90_000));
    const renewed = new X509Certificate(readFileSync(join(tls, 'server-cert.pem')));
    expect(renewed.serialNumber).not.toBe(before.serialNumber);
    expect(Date.parse(renewed.validTo) - Date.now()).toBeLessThanOrEqual(3_600_000);
    // dockerd reads its certificate at start: the hook of a real setup restarts it (systemctl restart docker).
    await dockerd.stop();
    dockerd = await startDaemon();
    expect(served(dockerd.address, roots).serialNumber).toBe(renewed.serialNumber);
    expect(dockerCli(dockerd.address, alice, ['version', '--format', '{{.Server.Version}}']).status).toBe(0);
  });
});
