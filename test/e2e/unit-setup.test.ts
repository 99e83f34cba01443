/**
 * Set-up from the unit (issue 29): systemd's one command, `muster run`,
 * with a config file and a token file: an empty data dir joins (or founds)
 * and runs; run again, already joined, it just runs; flags and MUSTER_*
 * win over the file; a bad file is a clear usage error; a node that left is
 * not joined again behind the operator's back.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runMuster } from '../helpers/cli.js';
import { scratchDir } from '../helpers/openssl.js';
import { processScope } from '../helpers/processes.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-unit-');
afterAll(() => scratch.cleanup());
const { start } = processScope();
const nodeId = (dir: string): string => (JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8')) as { nodeId: string }).nodeId;

describe('muster run with a config file', () => {
  it('founds from init:, joins from join: with a token file, and runs what the data dir holds the next time', { timeout: slow(180_000) }, async () => {
    // The manager, founded by `run` from its config (as systemd would start it).
    const mDir = scratch.path('m');
    const mConfig = scratch.write('manager.yaml', `data-dir: ${mDir}\nlisten-addr: 127.0.0.1:0\nlog-format: json\ninit:\n  cert-expiry: 720h\n`);
    const manager = start(['run', '--config', mConfig]);
    const [, token, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    expect(manager.stderr()).toMatch(/"certExpiry":"720h"/);

    // The worker: a token file and a config, then `run` (twice).
    const wDir = scratch.path('w');
    const tokenFile = scratch.write('token', `${token}\n`);
    const wConfig = scratch.write(
      'worker.yaml',
      `data-dir: ${wDir}\nlog-format: json\njoin:\n  token-file: ${tokenFile}\n  manager: ${address}\n  labels:\n    zone: eu-1\n`,
    );
    const first = start(['run', '--config', wConfig]);
    await first.waitFor(/This node joined cluster/);
    await first.waitFor(/"nextRenewal"/);
    expect(first.child.exitCode).toBeNull(); // it runs on after joining
    const id = nodeId(wDir);
    const listed = await runMuster(['node', 'ls', '--format', 'json', '--data-dir', mDir]);
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).toContain('eu-1');
    await first.stop();
    const again = start(['run'], { MUSTER_CONFIG: wConfig });
    await again.waitFor(/"nextRenewal"/);
    expect(again.stdout() + again.stderr()).not.toMatch(/joined cluster/);
    expect(nodeId(wDir)).toBe(id);
    await again.stop();
    // A flag wins over the file: text lines, though the file says json.
    const text = start(['run', '--config', wConfig, '--log-format', 'text']);
    await text.waitFor(/^\S+Z INFO certificate valid until /m);
    await text.stop();

    // A node that left is not joined again by the next boot.
    const left = start(['run', '--config', wConfig]);
    await left.waitFor(/"nextRenewal"/);
    expect((await runMuster(['leave', '--data-dir', wDir])).code).toBe(0);
    expect(await left.exit).toBe(0);
    const reboot = await runMuster(['run', '--config', wConfig]);
    expect(reboot.code).toBe(3);
    expect(reboot.stderr).toMatch(/holds a node that left its cluster/);
  });

  it('a bad config is a usage error naming the file and the key; a named file that is missing too', { timeout: slow(60_000) }, async () => {
    const typo = scratch.write('typo.yaml', 'data-dir: /tmp/x\nlisten_addr: 0.0.0.0:4377\n');
    const r1 = await runMuster(['run', '--config', typo]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/typo\.yaml: .*listen_addr|typo\.yaml: the file: /);
    const both = scratch.write('both.yaml', 'init: {}\njoin:\n  token-file: /t\n  manager: m:4377\n');
    expect((await runMuster(['run', '--config', both])).stderr).toContain('has both init: and join:');
    const notYaml = scratch.write('bad.yaml', 'data-dir: [\n');
    expect((await runMuster(['run', '--config', notYaml])).stderr).toMatch(/bad\.yaml is not YAML/);
    const missing = await runMuster(['run', '--config', scratch.path('nope.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read the config file');
  });
});
