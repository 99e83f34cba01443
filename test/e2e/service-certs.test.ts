/**
 * Service certificates with real processes (issue 28): a manager and a
 * worker; `muster cert add` in both layouts, with the exact file names,
 * modes and owner asked for; openssl checks the chain, the names and the
 * usages; the SAN policy refuses names the node may not carry until an admin
 * allows them (for the node, or for a label); a service certificate is no
 * identity on muster's API; renewals after `muster update --cert-expiry`
 * rewrite the files and run the hook; hooks that fail, hang and recover.
 */
import { readFileSync, readdirSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import type { CertificateView } from '../../src/api/schemas.js';
import type { ServiceStatus } from '../../src/agent/service-certs.js';
import { jsonLines, runMuster, type ChildRun } from '../helpers/cli.js';
import { AS_ROOT, listAsRoot, readAsRoot, runAsRoot, statAsRoot } from '../helpers/as-root.js';
import { curl } from '../helpers/curl.js';
import { openssl, opensslFixtures, opensslStatus, scratchDir } from '../helpers/openssl.js';
import { FAST_ENV, eventually, processScope, waitUntil } from '../helpers/processes.js';
import { story } from '../helpers/story.js';

const scratch = scratchDir('muster-svc-');
afterAll(() => {
  runAsRoot('rm', ['-rf', scratch.path('client')]); // nobody's folder (--owner): as another user, only root in the namespace removes it
  scratch.cleanup();
});
// Failed hooks are retried from 200 ms on (production: 5 s). As another user than root, the nodes run in a user
// namespace where that user is root (as-root.ts), so that a service folder can be given to another user (--owner).
const { start, joinNode } = processScope({ ...FAST_ENV, MUSTER_SERVICE_RETRY_BASE: '200ms' }, { prefix: AS_ROOT });
const fixtures = opensslFixtures(scratch);

const m = scratch.path('m');
const w = scratch.path('w');
let address = '';
let workerId = '';
let worker: ChildRun | undefined;
const root = (): string => join(m, 'certificates', 'root-ca.crt');

/** `openssl x509 -noout …` of a certificate file. */
const x509 = (file: string, ...args: string[]): string => openssl(['x509', '-in', file, '-noout', ...args]);
const modeOf = (file: string): number => statSync(file).mode & 0o777;
const serialOf = (file: string): string => x509(file, '-serial').trim();

/** `muster cert ls --format json` on the worker. */
async function certList(dir = w): Promise<ServiceStatus[]> {
  const r = await runMuster(['cert', 'ls', '--format', 'json', '--data-dir', dir]);
  if (r.code !== 0) throw new Error(r.stderr);
  return jsonLines<ServiceStatus>(r.stdout);
}

/** curl with a client certificate against the manager. */
const curlAs = (cert: string, key: string, method: string, path: string, body?: unknown) =>
  curl(
    [
      '--cacert',
      root(),
      '--cert',
      cert,
      '--key',
      key,
      '-X',
      method,
      ...(body === undefined ? [] : ['-H', 'content-type: application/json', '--data-binary', '@-']),
      `https://${address}${path}`,
    ],
    body === undefined ? undefined : JSON.stringify(body),
  );

describe('service certificates', () => {
  const { step } = story();
  step('writes a docker daemon layout that chains to the root, names what was asked, and serves only', { timeout: 120_000 }, async () => {
    const manager = start(['init', '--data-dir', m, '--listen-addr', '127.0.0.1:0']);
    const [, token, addr] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    address = addr;
    worker = await joinNode(w, token, address, ['--advertise-addr', '127.0.0.1', '--label', 'zone=edge']);
    workerId = (JSON.parse(readFileSync(join(w, 'node.json'), 'utf8')) as { nodeId: string }).nodeId;

    const out = scratch.path('dockerd');
    const r = await runMuster(['cert', 'add', 'dockerd', '--san', '127.0.0.1', '--layout', 'docker', '--out', out, '--data-dir', w]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Service certificate dockerd (127.0.0.1) written to ${out}`);
    expect(readdirSync(out).sort()).toEqual(['ca.pem', 'server-cert.pem', 'server-key.pem']);
    expect(modeOf(out)).toBe(0o700);
    expect(modeOf(join(out, 'server-key.pem'))).toBe(0o600);
    expect(modeOf(join(out, 'server-cert.pem'))).toBe(0o644);
    expect(modeOf(join(out, 'ca.pem'))).toBe(0o644);
    // A daemon folder's ca.pem is the admin anchor (API users only), not the cluster's roots.
    const anchor = scratch.path('admin-anchor.pem');
    expect((await runMuster(['ca', 'admin-anchor', '--out', anchor, '--data-dir', m])).code).toBe(0);
    expect(readFileSync(join(out, 'ca.pem'), 'utf8')).toBe(readFileSync(anchor, 'utf8'));
    expect(readFileSync(join(out, 'ca.pem'), 'utf8')).not.toBe(readFileSync(root(), 'utf8'));
    const cert = join(out, 'server-cert.pem');
    expect(opensslStatus(['verify', '-CAfile', root(), '-purpose', 'sslserver', cert]).status).toBe(0);
    expect(opensslStatus(['verify', '-CAfile', root(), '-purpose', 'sslclient', cert]).status).not.toBe(0);
    expect(x509(cert, '-ext', 'subjectAltName')).toMatch(/IP Address:127\.0\.0\.1\s*$/);
    expect(x509(cert, '-subject')).toContain(`OU = muster-service, CN = ${workerId}/dockerd`);
    expect(x509(cert, '-ext', 'extendedKeyUsage')).toMatch(/TLS Web Server Authentication\s*$/);
    // The key is the one the certificate holds.
    expect(openssl(['pkey', '-in', join(out, 'server-key.pem'), '-pubout'])).toBe(x509(cert, '-pubkey'));
  });

  step(
    'writes a docker client layout with the owner and key mode asked for, and a pem layout with the node names by default',
    { timeout: 120_000 },
    async () => {
      const client = scratch.path('client');
      const r = await runMuster([
        'cert',
        'add',
        'docker-client',
        '--client',
        '--layout',
        'docker',
        '--out',
        client,
        '--owner',
        'nobody:nogroup',
        '--mode',
        '0640',
        '--data-dir',
        w,
      ]);
      expect(r.code, r.stderr).toBe(0);
      // The folder is nobody's now: read as root (in the namespace, as another user than root).
      expect(listAsRoot(client).sort()).toEqual(['ca.pem', 'cert.pem', 'key.pem']);
      const nobody = Number(
        readFileSync('/etc/passwd', 'utf8')
          .split('\n')
          .find((l) => l.startsWith('nobody:'))!
          .split(':')[2],
      );
      const nogroup = Number(
        readFileSync('/etc/group', 'utf8')
          .split('\n')
          .find((l) => l.startsWith('nogroup:'))!
          .split(':')[2],
      );
      for (const file of ['ca.pem', 'cert.pem']) expect(statAsRoot(join(client, file))).toEqual([nobody, nogroup, 0o644]);
      expect(statAsRoot(join(client, 'key.pem'))).toEqual([nobody, nogroup, 0o640]);
      expect(statAsRoot(client)).toEqual([nobody, nogroup, 0o750]);
      const clientCert = scratch.write('docker-client-cert.pem', readAsRoot(join(client, 'cert.pem')));
      expect(x509(clientCert, '-ext', 'extendedKeyUsage')).toMatch(/TLS Web Client Authentication\s*$/);
      expect(opensslStatus(['verify', '-CAfile', root(), '-purpose', 'sslclient', clientCert]).status).toBe(0);

      const web = scratch.path('web');
      const hookLog = scratch.path('web-hook.log');
      const p = await runMuster(['cert', 'add', 'web', '--out', web, '--exec', `sh -c 'echo ran >> ${hookLog}'`, '--data-dir', w]);
      expect(p.code, p.stderr).toBe(0);
      expect(p.stdout).toContain('The hook ran.');
      expect(readFileSync(hookLog, 'utf8')).toBe('ran\n');
      expect(readdirSync(web).sort()).toEqual(['ca.crt', 'web.crt', 'web.key']);
      const sans = x509(join(web, 'web.crt'), '-ext', 'subjectAltName');
      expect(sans).toContain(`DNS:${hostname().toLowerCase()}`);
      expect(sans).toContain('IP Address:127.0.0.1');
      // Nothing but the three files was left behind (no temporary files).
      expect(readdirSync(web)).toHaveLength(3);
    },
  );

  step('refuses names the node may not carry until an admin allows them, for the node or for its label', { timeout: 180_000 }, async () => {
    const refused = await runMuster(['cert', 'add', 'api', '--san', 'api.example.com', '--out', scratch.path('api'), '--data-dir', w]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('may not name api.example.com in a service certificate');
    expect(refused.stderr).toContain(`muster node update --add-san PATTERN ${workerId}`);
    expect(existsSync(scratch.path('api'))).toBe(false);
    expect((await certList()).map((s) => s.definition.name)).not.toContain('api');

    // The API answers 403 with a stable code (the worker's own certificate asks).
    const csr = fixtures.csr(fixtures.key('ec:P-256'));
    const nodeCert = join(w, 'certificates', 'node.crt');
    const nodeKey = join(w, 'certificates', 'node.key');
    const direct = await curlAs(nodeCert, nodeKey, 'POST', '/v1/nodes/self/service-certificates', { name: 'api', csr, sans: ['api.example.com'] });
    expect(direct.status).toBe(403);
    expect(direct.json().code).toBe('SAN_NOT_ALLOWED');
    const bad = await curlAs(nodeCert, nodeKey, 'POST', '/v1/nodes/self/service-certificates', { name: 'api', csr, sans: ['http://x'] });
    expect([bad.status, bad.json().code]).toEqual([400, 'SAN_INVALID']);

    const update = await runMuster(['node', 'update', '--add-san', '*.example.com', workerId, '--data-dir', m]);
    expect(update.code, update.stderr).toBe(0);
    expect(update.stdout).toContain('*.example.com');
    const allowed = await runMuster(['cert', 'add', 'api', '--san', 'api.example.com', '--out', scratch.path('api'), '--data-dir', w]);
    expect(allowed.code, allowed.stderr).toBe(0);
    // A wildcard stands for one label only.
    const deeper = await runMuster(['cert', 'add', 'deep', '--san', 'a.b.example.com', '--out', scratch.path('deep'), '--data-dir', w]);
    expect(deeper.code).toBe(1);

    // A label's pattern: the worker (zone=edge) may name it, the manager (no label) may not.
    expect((await runMuster(['node', 'update', '--for-label', 'zone=edge', '--add-san', 'edge.internal', '--data-dir', m])).code).toBe(0);
    expect((await runMuster(['cert', 'add', 'edge', '--san', 'edge.internal', '--out', scratch.path('edge-w'), '--data-dir', w])).code).toBe(0);
    const onManager = await runMuster(['cert', 'add', 'edge', '--san', 'edge.internal', '--out', scratch.path('edge-m'), '--data-dir', m]);
    expect(onManager.code).toBe(1);
    expect(onManager.stderr).toContain('may not name edge.internal');

    // Every issuance is listed and audited, refusals too.
    const certs = jsonLines<CertificateView>((await runMuster(['ca', 'certs', '--format', 'json', '--data-dir', m])).stdout);
    const services = certs.filter((c) => c.role === 'service');
    expect(services.map((c) => c.service).sort()).toEqual(['api', 'docker-client', 'dockerd', 'edge', 'web']);
    expect(services.every((c) => c.subject === workerId || c.service === 'edge')).toBe(true);
    expect(services.find((c) => c.service === 'dockerd')).toMatchObject({ kind: 'service', status: 'valid', sans: ['127.0.0.1'] });
    const audit = readFileSync(join(m, 'manager', 'audit.log'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"service.issue"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit.filter((l) => l.result === 'ok').length).toBeGreaterThanOrEqual(5);
    expect(audit.some((l) => l.code === 'SAN_NOT_ALLOWED' && l.service === 'api')).toBe(true);
  });

  step('a service certificate is no identity on muster: admin routes, renewal and service issuance refuse it (403)', { timeout: 60_000 }, async () => {
    const client = scratch.path('client');
    // That folder is nobody's: copies of its certificate and key, read as root.
    const cert = scratch.write('client-cert-copy.pem', readAsRoot(join(client, 'cert.pem')));
    const key = scratch.write('client-key-copy.pem', readAsRoot(join(client, 'key.pem')));
    const admin = await curlAs(cert, key, 'GET', '/v1/nodes');
    expect([admin.status, admin.json().code]).toEqual([403, 'AUTH_FORBIDDEN']);
    const cluster = await curlAs(cert, key, 'PATCH', '/v1/cluster', { certExpiry: '2h' });
    expect(cluster.status).toBe(403);
    const csr = fixtures.csr(fixtures.key('ec:P-256'));
    const renew = await curlAs(cert, key, 'POST', '/v1/renew', { csr });
    expect([renew.status, renew.json().code]).toEqual([403, 'AUTH_FORBIDDEN']);
    const self = await curlAs(cert, key, 'GET', '/v1/nodes/self');
    expect(self.status).toBe(403);
    const more = await curlAs(cert, key, 'POST', '/v1/nodes/self/service-certificates', { name: 'x', csr, sans: [] });
    expect(more.status).toBe(403);
    // The server certificate too (serverAuth only, presented as a client anyway).
    const server = await curlAs(join(scratch.path('dockerd'), 'server-cert.pem'), join(scratch.path('dockerd'), 'server-key.pem'), 'GET', '/v1/nodes');
    expect(server.status).toBe(403);
  });

  step('renews the files and runs the hook when the node renews after muster update --cert-expiry', { timeout: 90_000 }, async () => {
    const web = scratch.path('web');
    const docker = scratch.path('dockerd');
    const before = { web: serialOf(join(web, 'web.crt')), docker: serialOf(join(docker, 'server-cert.pem')) };
    const u = await runMuster(['update', '--cert-expiry', '1h', '--data-dir', m]);
    expect(u.code, u.stderr).toBe(0);
    await waitUntil('the web hook ran again', () => readFileSync(scratch.path('web-hook.log'), 'utf8') === 'ran\nran\n');
    expect(serialOf(join(web, 'web.crt'))).not.toBe(before.web);
    await waitUntil('the docker server certificate was renewed', () => serialOf(join(docker, 'server-cert.pem')) !== before.docker);
    // The new certificates follow the new expiry (an hour, plus the hour of backdating).
    const notAfter = Date.parse(x509(join(web, 'web.crt'), '-enddate').trim().replace('notAfter=', ''));
    expect(notAfter - Date.now()).toBeLessThan(61 * 60_000);
    expect(readdirSync(web).sort()).toEqual(['ca.crt', 'web.crt', 'web.key']);
    expect(opensslStatus(['verify', '-CAfile', root(), join(web, 'web.crt')]).status).toBe(0);
    expect(openssl(['pkey', '-in', join(web, 'web.key'), '-pubout'])).toBe(x509(join(web, 'web.crt'), '-pubkey'));
  });

  step('logs, times out, counts and retries hooks that fail or hang, until they succeed', { timeout: 180_000 }, async () => {
    const flag = scratch.path('hook-may-pass');
    const failing = await runMuster(['cert', 'add', 'flaky', '--out', scratch.path('flaky'), '--exec', `test -e ${flag}`, '--data-dir', w]);
    expect(failing.code, failing.stderr).toBe(0); // the files are written; the hook is retried
    expect(failing.stderr).toContain('warning: the hook failed (exited 1)');
    const hanging = await runMuster(['cert', 'add', 'hangs', '--out', scratch.path('hangs'), '--exec', 'sleep 30', '--exec-timeout', '300ms', '--data-dir', w]);
    expect(hanging.code).toBe(0);
    expect(hanging.stderr).toContain('timed out after 300 ms');
    // Retried with backoff: the failures keep adding up.
    const counted = await eventually('both hooks failed several times', async () => {
      const list = await certList();
      const flaky = list.find((s) => s.definition.name === 'flaky')!;
      const hangs = list.find((s) => s.definition.name === 'hangs')!;
      return flaky.hook.failures >= 3 && hangs.hook.failures >= 2 ? { flaky, hangs } : undefined;
    });
    expect(counted.flaky.hook.lastError).toBe('exited 1');
    expect(counted.hangs.hook.lastError).toMatch(/^timed out after 300 ms/);
    const table = await runMuster(['cert', 'ls', '--data-dir', w]);
    expect(table.stdout).toMatch(/flaky .*failing \(\d+\): exited 1/);
    expect(table.stdout).toMatch(/Hook failures since the node started: \d+/);
    // muster status tells it too (the node has no metrics endpoint of its own).
    const status = await runMuster(['status', '--data-dir', w]);
    expect(status.stdout).toMatch(/Service certs: +\d+ kept renewed, [1-9]\d* failing; hook failures since the node started: [1-9]\d*/);
    // Once the hook can pass, the next retry succeeds and the failure is cleared (the count stays).
    writeFileSync(flag, '');
    const healed = await eventually('the flaky hook succeeded', async () => {
      const flaky = (await certList()).find((s) => s.definition.name === 'flaky')!;
      return flaky.hook.lastError === undefined && flaky.hook.lastOkAt !== undefined ? flaky : undefined;
    });
    expect(healed.hook.failures).toBeGreaterThanOrEqual(3);
    expect((await runMuster(['cert', 'rm', 'hangs', '--data-dir', w])).code).toBe(0);
  });

  step('keeps the definitions across a restart, and stops renewing and revokes them when the node is removed', { timeout: 120_000 }, async () => {
    // The worker's log told of the hooks that failed.
    expect(worker!.stderr()).toMatch(/the hook of service certificate flaky failed \(exited 1\); retrying/);
    expect(await worker!.stop('SIGTERM')).toBe(0);
    expect(existsSync(join(w, 'agent.sock'))).toBe(false);
    const down = await runMuster(['cert', 'ls', '--data-dir', w]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('no muster node process answers on');
    worker = start(['run', '--data-dir', w]);
    const names = await eventually('the restarted node answers cert ls', async () => (await certList()).map((s) => s.definition.name).sort());
    expect(names).toEqual(['api', 'docker-client', 'dockerd', 'edge', 'flaky', 'web']);
    expect(modeOf(join(w, 'services.json'))).toBe(0o600);
    expect(modeOf(join(w, 'agent.sock'))).toBe(0o600);
    const r = await runMuster(['node', 'rm', '--force', workerId, '--data-dir', m]);
    expect(r.code, r.stderr).toBe(0);
    const certs = jsonLines<CertificateView>((await runMuster(['ca', 'certs', '--format', 'json', '--data-dir', m])).stdout);
    const live = certs.filter((c) => c.role === 'service' && c.subject === workerId && c.status === 'valid');
    expect(live).toEqual([]);
    const crl = await curl(['--cacert', root(), `https://${address}/v1/crl?format=pem`]);
    const text = openssl(['crl', '-noout', '-text'], crl.body);
    expect(text).toContain(serialOf(join(scratch.path('web'), 'web.crt')).replace('serial=', ''));
  });
});
