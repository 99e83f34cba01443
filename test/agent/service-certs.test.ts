/**
 * The node's service certificates (src/agent/service-certs.ts) against a
 * real in-process manager, on a fake clock: hooks (real processes) that
 * fail, hang and recover are logged, counted and retried on the clock's
 * backoff; a renewal the managers refuse is retried until they allow it;
 * renewals rewrite the files atomically.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { recordingLogger } from '../../src/core/logger.js';
import { seededRandom } from '../../src/core/random.js';
import { ServiceCertificates, ownerRefused, splitCommand, type ServiceDefinition, type ServiceStatus } from '../../src/agent/service-certs.js';
import { NODES } from '../../src/api/routes.js';
import type { Caller } from '../../src/manager/state/caller.js';
import { scratchDir } from '../helpers/openssl.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../helpers/service.js';

const scratch = scratchDir('muster-svc-unit-');
let cluster: TestCluster;
let caller: () => Promise<Caller>;

beforeAll(async () => {
  cluster = await foundTestCluster();
  const joined = await cluster.caServer.join(
    { token: cluster.settings.joinTokens().worker, csr: freshCsr().csr, hostname: 'web-1', managerAddr: '10.0.0.7:4377' },
    '10.0.0.7',
  );
  const cert = new X509Certificate(joined.certificate);
  // Read each time: the node record changes as its service certificates are recorded.
  caller = () => cluster.authoriser.authorize(cert, NODES);
});
afterAll(async () => {
  await cluster.cleanup();
  scratch.cleanup();
});

const RETRY = { baseMs: 1_000, capMs: 8_000 };

async function serviceCerts(file: string) {
  const logger = recordingLogger();
  const certs = await ServiceCertificates.load({
    file: scratch.path(file),
    clock: cluster.clock,
    random: seededRandom('hooks'),
    logger,
    retry: RETRY,
    issue: async (request) => cluster.caServer.issueService(await caller(), request),
  });
  return { certs, logger };
}

const definition = (name: string, extra: Partial<ServiceDefinition> = {}): ServiceDefinition => ({
  name,
  sans: [],
  client: false,
  out: scratch.path(name),
  layout: 'pem',
  keyMode: 0o600,
  execTimeoutMs: 5_000,
  ...extra,
});

const statusOf = (certs: ServiceCertificates, name: string): ServiceStatus => certs.list().find((s) => s.definition.name === name)!;

describe('service certificate hooks', () => {
  it('counts and logs a failing hook, retries it on the backoff of the clock, and clears the failure once it passes', async () => {
    const { certs, logger } = await serviceCerts('a.json');
    const flag = scratch.path('flag');
    const added = await certs.add(definition('flaky', { exec: ['test', '-e', flag] }));
    expect(added.hook).toMatchObject({ runs: 1, failures: 1, lastError: 'exited 1' });
    expect(added.sans).toEqual(['web-1', '10.0.0.7']);
    expect(logger.records.some((r) => r.level === 'warn' && r.message.includes('the hook of service certificate flaky failed (exited 1); retrying'))).toBe(
      true,
    );
    const retryAt = Date.parse(added.hook.nextRetryAt!);
    // Nothing runs before the backoff is up.
    cluster.clock.advance(retryAt - cluster.clock.now() - 1);
    expect(statusOf(certs, 'flaky').hook.runs).toBe(1);
    cluster.clock.advance(1);
    await vi.waitFor(() => expect(statusOf(certs, 'flaky').hook.failures).toBe(2), { timeout: 10_000 });
    // The second wait is drawn below a doubled ceiling.
    const second = Date.parse(statusOf(certs, 'flaky').hook.nextRetryAt!) - cluster.clock.now();
    expect(second).toBeLessThan(2 * RETRY.baseMs);
    (await import('node:fs')).writeFileSync(flag, '');
    cluster.clock.advance(second);
    await vi.waitFor(() => expect(statusOf(certs, 'flaky').hook.lastError).toBeUndefined(), { timeout: 10_000 });
    expect(statusOf(certs, 'flaky').hook).toMatchObject({ runs: 3, failures: 2 });
    expect(statusOf(certs, 'flaky').hook.nextRetryAt).toBeUndefined();
    expect(certs.hookFailures).toBe(2);
    certs.stop();
  });

  it('kills a hook that hangs past its timeout and counts it as failed', async () => {
    const { certs } = await serviceCerts('b.json');
    const started = Date.now();
    const added = await certs.add(definition('hangs', { exec: ['sleep', '30'], execTimeoutMs: 200 }));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(added.hook).toMatchObject({ runs: 1, failures: 1, lastError: 'timed out after 200 ms (killed)' });
    const missing = await certs.add(definition('missing', { exec: ['/nonexistent/reload'] }));
    expect(missing.hook.lastError).toBe('could not start /nonexistent/reload: ENOENT');
    certs.stop();
  });

  it('renews every service with the node: new files written atomically, then the hook', async () => {
    const { certs } = await serviceCerts('c.json');
    const log = scratch.path('renew.log');
    const added = await certs.add(definition('web', { exec: ['sh', '-c', `echo x >> ${log}`] }));
    const before = readFileSync(added.files.cert, 'utf8');
    certs.renewAll('node renewal');
    await vi.waitFor(() => expect(readFileSync(log, 'utf8')).toBe('x\nx\n'), { timeout: 10_000 });
    const after = readFileSync(added.files.cert, 'utf8');
    expect(after).not.toBe(before);
    expect(new X509Certificate(after).checkPrivateKey((await import('node:crypto')).createPrivateKey(readFileSync(added.files.key)))).toBe(true);
    expect(readdirSync(scratch.path('web')).sort()).toEqual(['ca.crt', 'web.crt', 'web.key']);
    // The definition was kept, with what was issued last.
    const file = JSON.parse(readFileSync(scratch.path('c.json'), 'utf8')) as { services: { definition: ServiceDefinition; issued: { serial: string } }[] };
    expect(file.services[0]!.issued.serial).toBe(new X509Certificate(after).serialNumber);
    certs.stop();
  });

  it('retries a renewal the managers refuse (a name withdrawn) until it is allowed again', async () => {
    const { certs, logger } = await serviceCerts('d.json');
    const node = (await caller()).nodeId;
    await cluster.sanPolicy.updateNode(node, { addSans: ['*.example.com'] });
    const added = await certs.add(definition('api', { sans: ['api.example.com'] }));
    const serial = added.serial;
    await cluster.sanPolicy.updateNode(node, { rmSans: ['*.example.com'] });
    certs.renewAll('node renewal');
    await vi.waitFor(() => expect(statusOf(certs, 'api').issueError?.code).toBe('SAN_NOT_ALLOWED'), { timeout: 10_000 });
    expect(logger.records.some((r) => r.message === 'service certificate api could not be renewed; retrying')).toBe(true);
    await cluster.sanPolicy.updateNode(node, { addSans: ['*.example.com'] });
    cluster.clock.advance(RETRY.capMs);
    await vi.waitFor(() => expect(statusOf(certs, 'api').issueError).toBeUndefined(), { timeout: 10_000 });
    expect(statusOf(certs, 'api').serial).not.toBe(serial);
    certs.stop();
  });

  it('a refused add keeps nothing: no definition, no files', async () => {
    const { certs } = await serviceCerts('e.json');
    await expect(certs.add(definition('nope', { sans: ['elsewhere.test'] }))).rejects.toMatchObject({ code: 'SAN_NOT_ALLOWED' });
    expect(certs.list()).toEqual([]);
    expect(existsSync(join(scratch.path('nope'), 'nope.key'))).toBe(false);
  });
});

describe('splitCommand', () => {
  it('splits words as a shell would, without expanding anything', () => {
    expect(splitCommand(`systemctl reload nginx`)).toEqual(['systemctl', 'reload', 'nginx']);
    expect(splitCommand(`sh -c 'nginx -s reload && echo "$HOME"'`)).toEqual(['sh', '-c', 'nginx -s reload && echo "$HOME"']);
    expect(splitCommand(`a "b \\"c\\"" d\\ e`)).toEqual(['a', 'b "c"', 'd e']);
    expect(() => splitCommand(`a 'b`)).toThrow(/unclosed/);
    expect(() => splitCommand('   ')).toThrow(/no command/);
  });
});

describe('ownerRefused', () => {
  it('says OWNER_NOT_PERMITTED (403, a hint to run as root or drop --owner) when the system refuses a chown with EPERM; other failures are FILE_ACCESS', () => {
    const withOwner = definition('client', { owner: { uid: 65534, gid: 65534, text: 'nobody:nogroup' } });
    const eperm = Object.assign(new Error('EPERM: operation not permitted, chown'), { code: 'EPERM' });
    const refused = ownerRefused(withOwner, eperm);
    expect([refused.code, refused.statusCode]).toEqual(['OWNER_NOT_PERMITTED', 403]);
    expect(refused.message).toBe(`cannot give ${withOwner.out} to nobody:nogroup: this node does not run as root`);
    expect(refused.hint).toMatch(/run the node as root .* leave out --owner/);
    expect(ownerRefused(withOwner, Object.assign(new Error('EIO: i/o error'), { code: 'EIO' })).code).toBe('FILE_ACCESS');
  });
});
