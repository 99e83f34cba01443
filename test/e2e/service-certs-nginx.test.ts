/**
 * The nginx recipe of the README (issue 28, item 4), run with the real
 * programs: nginx serves a muster service certificate, asks API users for
 * theirs (ssl_verify_client) and reads the cluster's CRL (ssl_crl), which
 * the certificate's hook refreshes before it reloads nginx. Its client CA is
 * the admin anchor: an API user passes, a worker's certificate does not. A
 * renewal of the node rewrites the files, the hook runs, nginx serves the
 * new certificate and refuses an API user revoked meanwhile.
 */
import { X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runMuster } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { NGINX, startNginx, type NginxServer } from '../helpers/nginx.js';
import { scratchDir } from '../helpers/openssl.js';
import { eventually, processScope } from '../helpers/processes.js';

const scratch = scratchDir('muster-nginx-');
let nginx: (NginxServer & { conf: string }) | undefined;
afterAll(async () => {
  await nginx?.stop();
  scratch.cleanup();
});
const { start } = processScope();

/** The serial of the certificate a TLS server presents. */
function servedSerial(url: string, caFile: string): string {
  const { hostname, port } = new URL(url);
  const run = spawnSync('openssl', ['s_client', '-connect', `${hostname}:${port}`, '-CAfile', caFile], { input: '', encoding: 'utf8' });
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(run.stdout)?.[0];
  if (pem === undefined) throw new Error(`no certificate from ${url}:\n${run.stdout}\n${run.stderr}`);
  expect(run.stdout).toContain('Verify return code: 0 (ok)');
  return new X509Certificate(pem).serialNumber;
}

describe('recipe: nginx served with a service certificate, its CRL refreshed by the hook', () => {
  it('serves the certificate, admits an API user, and after a renewal serves the new one and refuses the user revoked meanwhile', {
    timeout: 120_000,
  }, async () => {
    const m = scratch.path('m');
    const manager = start(['init', '--data-dir', m, '--listen-addr', '127.0.0.1:0']);
    const [, token, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    const site = scratch.path('nginx');
    const tls = join(site, 'tls');
    const conf = join(site, 'nginx.conf');
    // The hook as the README writes it: fetch the CRL (PEM, one per root), then reload nginx if it runs.
    const hook = `sh -c 'curl -sf --cacert ca.crt -o crl.pem.new "https://${address}/v1/crl?format=pem" && mv crl.pem.new crl.pem && { test ! -f ${site}/nginx.pid || ${NGINX} -p ${site} -c ${conf} -e stderr -s reload; }'`;
    const add = await runMuster(['cert', 'add', 'nginx', '--san', '127.0.0.1', '--out', tls, '--exec', hook, '--data-dir', m]);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toContain('The hook ran.');

    // The client CA is the admin anchor: API users' certificates chain to it (depth 1), nodes' do not.
    const anchor = join(tls, 'admin-anchor.pem');
    expect((await runMuster(['ca', 'admin-anchor', '--out', anchor, '--data-dir', m])).code).toBe(0);
    nginx = await startNginx(
      site,
      { clientCa: anchor, crl: join(tls, 'crl.pem'), verifyDepth: 1 },
      { cert: join(tls, 'nginx.crt'), key: join(tls, 'nginx.key') },
    );
    expect(servedSerial(nginx.url, join(tls, 'ca.crt'))).toBe(
      new X509Certificate(await import('node:fs').then((fs) => fs.readFileSync(join(tls, 'nginx.crt')))).serialNumber,
    );

    const alice = scratch.path('alice');
    expect((await runMuster(['ca', 'create-api-certificate', 'alice', '--out', alice, '--data-dir', m])).code).toBe(0);
    const asAlice = () => curl(['--cacert', join(tls, 'ca.crt'), '--cert', join(alice, 'cert.pem'), '--key', join(alice, 'key.pem'), nginx!.url]);
    const admitted = await asAlice();
    expect(admitted.status).toBe(200);
    expect(admitted.body).toContain('CN=alice');
    // A worker's certificate chains to the cluster root, not to the anchor: refused.
    const w = scratch.path('w');
    const worker = start(['join', address, '--data-dir', w], { MUSTER_TOKEN: token });
    await worker.waitFor(/This node joined cluster/);
    const asWorker = await curl([
      '--cacert',
      join(tls, 'ca.crt'),
      '--cert',
      join(w, 'certificates', 'node.crt'),
      '--key',
      join(w, 'certificates', 'node.key'),
      nginx.url,
    ]);
    expect(asWorker.status).toBe(400);
    expect(asWorker.body).toContain('The SSL certificate error');

    const before = servedSerial(nginx.url, join(tls, 'ca.crt'));
    expect((await runMuster(['ca', 'revoke-api-certificate', 'alice', '--data-dir', m])).code).toBe(0);
    // nginx still reads the CRL of before the revocation: alice passes until the hook refreshes it.
    expect((await asAlice()).status).toBe(200);
    manager.child.kill('SIGHUP'); // the node renews now, and its service certificates with it
    const after = await eventually('nginx serves the renewed certificate', async () => {
      const serial = servedSerial(nginx!.url, join(tls, 'ca.crt'));
      return serial !== before ? serial : undefined;
    });
    expect(after).not.toBe(before);
    const refused = await asAlice();
    expect(refused.status).toBe(400);
    expect(refused.body).toContain('The SSL certificate error');
  });
});
