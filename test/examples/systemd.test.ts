/** The example systemd units: hardened (systemd-analyze security, offline, scores them), run as the dedicated user, start what the README installs, and do not restart a node that stopped for good. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EXIT_FATAL } from '../../src/core/errors.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe.each(['muster-manager', 'muster-node'])('%s.service', (unit) => {
  const file = new URL(`../../examples/systemd/${unit}.service`, import.meta.url).pathname;
  const text = readFileSync(file, 'utf8');

  it('scores an exposure of at most 5.0 in systemd-analyze security', () => {
    const out = execFileSync('systemd-analyze', ['security', '--offline=yes', file], { encoding: 'utf8' });
    const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(out)?.[1]);
    expect(score).toBeLessThanOrEqual(5.0);
  });

  it('restarts a node that failed, but not one that stopped for good (exit 3, EXIT_FATAL), as the README says', () => {
    expect(text).toMatch(/^Restart=on-failure$/m);
    expect(text).toMatch(new RegExp(`^RestartPreventExitStatus=${EXIT_FATAL}$`, 'm'));
    expect(README).toMatch(new RegExp(`Exit codes: 0 success, 1 operational failure, 2 usage error, ${EXIT_FATAL} fatal`));
    expect(README).toContain(`(\`RestartPreventExitStatus=${EXIT_FATAL}\`)`);
  });

  it('runs as the dedicated user the README creates, the muster the README installs, with umask 077', () => {
    expect(text).toMatch(/^User=muster$/m);
    expect(text).toMatch(/^UMask=0077$/m);
    const exec = /^ExecStart=(\S+) run --data-dir \/var\/lib\/muster$/m.exec(text)?.[1];
    expect(exec).toBe('/usr/local/bin/muster');
    expect(README).toContain('npm install -g');
    expect(README).toContain(exec);
    expect(README).toContain('useradd --system');
  });
});
