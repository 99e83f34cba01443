/**
 * The docker conventions of client commands against a real manager:
 * MUSTER_HOST / --host in each form, `status --host`, `status --format
 * json`, and status's exit status when no manager answers.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runMuster } from '../helpers/cli.js';
import { freePort } from '../helpers/etcd.js';
import { scratchDir } from '../helpers/openssl.js';
import { processScope } from '../helpers/processes.js';
import { afterAll } from 'vitest';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-host-');
afterAll(() => scratch.cleanup());
const { start } = processScope();

describe('--host and MUSTER_HOST', () => {
  it('tcp://H:P, H:P and unix:///PATH reach the manager; http:// is refused; status --host and --format json; status exits 1 when no manager answers', {
    timeout: slow(120_000),
  }, async () => {
    const dir = scratch.path('m');
    const manager = start(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    const [, address] = (await manager.waitFor(/muster join --token SWMTKN-1-\S+ (127\.0\.0\.1:\d+)/)) as unknown as [string, string];
    const alice = scratch.path('alice');
    expect((await runMuster(['ca', 'create-api-certificate', 'alice', '--out', alice, '--data-dir', dir])).code).toBe(0);
    const asAlice = (host: string) => ({ env: { MUSTER_HOST: host, MUSTER_CERT_PATH: alice } });
    const managerId = (await runMuster(['node', 'ls', '-q', '--data-dir', dir])).stdout.trim();

    for (const host of [`tcp://${address}`, address, `tcp://${address}/`]) {
      const ls = await runMuster(['node', 'ls', '-q'], asAlice(host));
      expect(ls.code, `${host}: ${ls.stderr}`).toBe(0);
      expect(ls.stdout.trim()).toBe(managerId);
    }
    // The control socket: its owner acts as the manager, no certificate.
    const socket = await runMuster(['node', 'ls', '-q', '--host', `unix://${join(dir, 'manager', 'control.sock')}`]);
    expect(socket.code, socket.stderr).toBe(0);
    expect(socket.stdout.trim()).toBe(managerId);
    // No port: 4377, said as such (nothing listens there in this test).
    const closed = await freePort();
    const noPort = await runMuster(['node', 'ls', '-q'], asAlice('tcp://127.0.0.1'));
    expect(noPort.code).toBe(1);
    expect(noPort.stderr).toContain('127.0.0.1:4377');
    const scheme = await runMuster(['node', 'ls'], asAlice(`http://${address}`));
    expect(scheme.code).toBe(2);
    expect(scheme.stderr).toMatch(
      /error: --host http:\/\/127\.0\.0\.1:\d+ is not an address muster can reach\nhint: write it as HOST\[:PORT\], tcp:\/\/HOST\[:PORT\] or unix:/,
    );

    const remote = await runMuster(['status', '--format', 'json'], asAlice(`tcp://${address}`));
    expect(remote.code, remote.stderr).toBe(0);
    const facts = JSON.parse(remote.stdout) as Record<string, string>;
    expect(facts).toMatchObject({ manager: address, state: 'reachable', store: 'ok' });
    expect(facts.clusterId).toMatch(/^[0-9a-z]{25}$/);
    const table = await runMuster([
      'status',
      '--host',
      address,
      '--tls-cert',
      join(alice, 'cert.pem'),
      '--tls-key',
      join(alice, 'key.pem'),
      '--tls-ca',
      join(alice, 'ca.pem'),
    ]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^state: +reachable$/m);
    const away = await runMuster(['status', '--format', 'json'], asAlice(`127.0.0.1:${closed}`));
    expect(away.code).toBe(1);
    expect(JSON.parse(away.stdout)).toMatchObject({ state: 'unreachable (MANAGER_UNREACHABLE)' });

    const local = await runMuster(['status', '--format', 'json', '--data-dir', dir]);
    expect(local.code, local.stderr).toBe(0);
    expect(JSON.parse(local.stdout)).toMatchObject({ nodeId: managerId, reachable: 1 });
    await manager.stop();
    const down = await runMuster(['status', '--data-dir', dir]);
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(/Managers: +1 known, 0 reachable/);
  });
});
