/**
 * A real cluster on loopback, as real processes: `muster init` and two
 * `muster join`. Certificates checked with openssl; renewal driven by admin
 * actions (expiry change) and by SIGHUP while the manager is down.
 * (Promotion, which needs a shared store, is in ha.test.ts.)
 * Polling is sped up through MUSTER_POLL_INTERVAL; nothing sleeps for a
 * fixed time: every wait is for a log line or a file change.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, runMuster, spawnMuster, type ChildRun } from '../helpers/cli.js';
import { opensslStatus, scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-e2e-cluster-');
const FAST = { MUSTER_POLL_INTERVAL: '1s', MUSTER_RENEW_BACKOFF_BASE: '300ms', MUSTER_LOG_LEVEL: 'info' };
const dirs = { manager: scratch.path('manager'), w1: scratch.path('w1'), w2: scratch.path('w2'), mitm: scratch.path('mitm'), victim: scratch.path('victim') };
const running: ChildRun[] = [];
let manager: ChildRun;
let address: string;
let workerToken: string;
const workers: Record<'w1' | 'w2', ChildRun> = {} as Record<'w1' | 'w2', ChildRun>;

const certOf = (dir: string): X509Certificate => new X509Certificate(readFileSync(join(dir, 'certificates', 'node.crt')));
const verify = (dir: string) => opensslStatus(['verify', '-CAfile', join(dir, 'certificates', 'root-ca.crt'), join(dir, 'certificates', 'node.crt')]);
const nodeJson = (dir: string): { nodeId: string; role: string } =>
  JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8')) as { nodeId: string; role: string };

function start(argv: string[]): ChildRun {
  const run = spawnMuster(argv, { env: FAST });
  running.push(run);
  return run;
}

/** Waits until `dir`'s certificate satisfies `test` (the agent writes it atomically). */
async function waitForCert(run: ChildRun, dir: string, test: (cert: X509Certificate) => boolean, what: string): Promise<X509Certificate> {
  const deadline = Date.now() + slow(30_000);
  for (;;) {
    const cert = certOf(dir);
    if (test(cert)) return cert;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${run.stderr()}`);
    await run.waitFor(/renewed until/, slow(30_000)).catch(() => undefined);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

beforeAll(async () => {
  manager = start(['init', '--data-dir', dirs.manager, '--listen-addr', '127.0.0.1:0']);
  const match = await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/);
  workerToken = match[1]!;
  address = match[2]!;
  for (const name of ['w1', 'w2'] as const) {
    workers[name] = start(['join', '--token', workerToken, address, '--data-dir', dirs[name]]);
  }
  await Promise.all(Object.values(workers).map((w) => w.waitFor(/This node joined cluster/)));
});

afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
  scratch.cleanup();
});

describe('muster init + two muster join', () => {
  it('both nodes hold certificates that openssl verifies, with key files 0600', () => {
    for (const dir of [dirs.w1, dirs.w2, dirs.manager]) {
      const result = verify(dir);
      expect(result.output).toMatch(/: OK/);
      expect(result.status).toBe(0);
    }
    expect(certOf(dirs.w1).subject).toMatch(/OU=swarm-worker/);
    expect(nodeJson(dirs.w1).role).toBe('worker');
    expect(workers.w1.stdout()).toMatch(/This node joined cluster [0-9a-z]{25} as a worker \(node ID [0-9a-z]{25}\)\./);
  });

  it('logs one line per state change and never a token or a key', () => {
    const all = [manager, workers.w1, workers.w2].map((r) => r.stdout() + r.stderr()).join('\n');
    expect(all).toMatch(/joined cluster .* as worker/);
    expect(all).toMatch(/node joined/);
    const secretPart = workerToken.split('-')[3]!;
    expect(workers.w1.stderr()).not.toContain(secretPart);
    expect(manager.stderr()).not.toContain(secretPart);
    expect(all).not.toMatch(/PRIVATE KEY/);
  });

  it('an admin setting --cert-expiry 1h gets every node re-issued with <= 1h, without restarts', async () => {
    const update = await runMuster(['update', '--cert-expiry', '1h', '--data-dir', dirs.manager]);
    expect(update.code, update.stderr).toBe(0);
    const limit = Date.now() + 3_600_000 + 5_000;
    for (const [name, run, dir] of [
      ['w1', workers.w1, dirs.w1],
      ['w2', workers.w2, dirs.w2],
      ['manager', manager, dirs.manager],
    ] as const) {
      const cert = await waitForCert(run, dir, (c) => Date.parse(c.validTo) <= limit, `${name} to renew with 1h`);
      expect(Date.parse(cert.validTo)).toBeLessThanOrEqual(limit);
      expect(verify(dir).status).toBe(0);
    }
    expect(workers.w1.stderr()).toMatch(/the manager asks for a renewal now \(cert-expiry\)/);
  });

  it('a node asked to renew while the manager is down retries, then renews once it is back', async () => {
    const before = certOf(dirs.w1).serialNumber;
    expect(await manager.stop()).toBe(0);
    workers.w1.child.kill('SIGHUP');
    await workers.w1.waitFor(/renewal failed; retrying in \d+s because cannot reach the manager/);
    manager = start(['run', '--data-dir', dirs.manager, '--listen-addr', address]);
    await manager.waitFor(/manager listening on/);
    const after = await waitForCert(workers.w1, dirs.w1, (c) => c.serialNumber !== before, 'w1 to renew after the outage');
    expect(after.serialNumber).not.toBe(before);
    expect(verify(dirs.w1).status).toBe(0);
  });
});

describe('a man in the middle', () => {
  it("a join with this cluster's token against another cluster is refused before any CSR is sent", async () => {
    const impostor = start(['init', '--data-dir', dirs.mitm, '--listen-addr', '127.0.0.1:0']);
    const impostorAddr = (await impostor.waitFor(/muster join --token \S+ (127\.0\.0\.1:\d+)/))[1]!;
    const victim = await runMuster(['join', '--token', workerToken, impostorAddr, '--data-dir', dirs.victim]);
    expect(victim.code).not.toBe(0);
    expect(victim.code).toBe(1);
    expect(victim.stderr).toMatch(/error: the root CA served by 127\.0\.0\.1:\d+ does not match the join token; nothing was sent/);
    expect(victim.stderr).toMatch(/hint: the token belongs to another cluster, or someone in the middle is impersonating the manager/);
    expect(existsSync(dirs.victim) ? readdirSync(dirs.victim) : []).toEqual([]);
    // The impostor saw no join: it still lists only itself.
    const nodes = await runMuster(['node', 'ls', '--format', 'json', '--data-dir', dirs.mitm]);
    expect(jsonLines(nodes.stdout)).toHaveLength(1);
    expect(impostor.stderr()).not.toMatch(/node joined/);
  });
});
