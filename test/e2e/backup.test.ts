/**
 * Backup and restore with real processes (issue 27 item 8): `muster store
 * backup` while the manager serves writes a 0600 JSON file in which no
 * secret is in clear; the manager's data dir is wiped, `muster store
 * restore` founds a one-manager cluster from the file in a new data dir, and
 * on the same address the workers that joined before renew against it and
 * new ones join with the old token, while the old manager's certificate is
 * refused. A wrong key writes nothing; under autolock the unlock key opens
 * the backup and the restored manager starts locked; a backup of an etcd
 * cluster restores onto the embedded store.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { cpSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runMuster, type ChildRun } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { freePort, startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { corpRoot, opensslStatus, scratchDir } from '../helpers/openssl.js';
import { FAST_ENV, processScope, waitUntil } from '../helpers/processes.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-backup-');
let etcd: EtcdCluster | undefined;
afterAll(async () => {
  await etcd?.stop();
  scratch.cleanup();
});
const { start, joinNode } = processScope(FAST_ENV);

const certOf = (dir: string): X509Certificate => new X509Certificate(readFileSync(join(dir, 'certificates', 'node.crt')));
const nodeJson = (dir: string): { clusterId: string; nodeId: string } =>
  JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8')) as { clusterId: string; nodeId: string };
const keyLine = (text: string): string => /^ {4}(SWMKEY-1-\S+)$/m.exec(text)![1]!;
const derOf = (pem: string): Buffer => createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });

/** Every string in a JSON value, and what each decodes to as base64: a sealed value is base64, a secret in clear might be too. */
function decodedStrings(value: unknown): Buffer[] {
  if (typeof value === 'string')
    return [Buffer.from(value, 'utf8'), ...(/^[A-Za-z0-9+/=_-]{16,}$/.test(value) ? [Buffer.from(value, 'base64'), Buffer.from(value, 'base64url')] : [])];
  if (Array.isArray(value)) return value.flatMap(decodedStrings);
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => [Buffer.from(k, 'utf8'), ...decodedStrings(v)]);
  return [];
}

/** Asserts the backup holds none of `secrets`, in its text or in any decoded value. */
function expectNoSecrets(file: string, secrets: Record<string, string | Buffer>): void {
  const text = readFileSync(file);
  const decoded = decodedStrings(JSON.parse(text.toString('utf8')));
  expect(text.includes('PRIVATE KEY')).toBe(false);
  for (const [what, secret] of Object.entries(secrets)) {
    expect(text.includes(secret), `${what} in the file`).toBe(false);
    for (const bytes of decoded) expect(bytes.includes(secret), `${what} in a decoded value`).toBe(false);
  }
}

/** A root CA made here, so the test knows its key. */
function ownRoot(name: string): { cert: string; key: string } {
  const key = scratch.path(`${name}.key`);
  const cert = scratch.path(`${name}.pem`);
  corpRoot(key, cert);
  return { cert, key };
}

/** SIGHUP asks the worker to renew now; resolves with its new certificate once it renewed (against whichever manager serves). */
async function renewNow(worker: ChildRun, dir: string): Promise<X509Certificate> {
  const before = certOf(dir).serialNumber;
  worker.child.kill('SIGHUP');
  await waitUntil(`${dir} to renew`, () => certOf(dir).serialNumber !== before, slow(30_000));
  return certOf(dir);
}

describe('backup and restore on the embedded store', () => {
  it('a backup while the manager serves: 0600, JSON, no secret in clear; wipe, restore on a new data dir, and the workers renew and join against it', {
    timeout: slow(180_000),
  }, async () => {
    const root = ownRoot('ca');
    const m = scratch.path('m');
    const port = await freePort();
    const manager = start(['init', '--data-dir', m, '--listen-addr', `127.0.0.1:${port}`, '--ca-cert', root.cert, '--ca-key', root.key]);
    const [, workerToken, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    const managerToken = (await runMuster(['join-token', '-q', 'manager', '--data-dir', m])).stdout.trim();
    expect(managerToken).toMatch(/^SWMTKN-1-/);
    const w1Dir = scratch.path('w1');
    const w1 = await joinNode(w1Dir, workerToken, address);
    const oldManager = nodeJson(m);
    const dataKeyText = readFileSync(join(m, 'manager', 'data.key'), 'utf8').trim();
    const rootBytes = readFileSync(join(m, 'certificates', 'root-ca.crt'), 'utf8');
    // The old manager's credentials, kept to show they no longer open the restored cluster.
    cpSync(join(m, 'certificates'), scratch.path('old-manager-certs'), { recursive: true });

    const file = scratch.path('backup.json');
    const backup = await runMuster(['store', 'backup', '--out', file, '--data-dir', m]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stdout).toMatch(
      new RegExp(`^Backed up cluster ${oldManager.clusterId} \\(\\d+ records at store revision \\d+, from level .*\\) to ${file}\\.`),
    );
    const backupKey = keyLine(backup.stdout);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { format: string; clusterId: string; dataKey: { under: string }; records: { key: string }[] };
    expect([parsed.format, parsed.clusterId, parsed.dataKey.under]).toEqual(['muster-backup/1', oldManager.clusterId, 'backup-key']);
    expect(parsed.records.map((r) => r.key)).toEqual(
      expect.arrayContaining(['meta/cluster', 'meta/ca', 'meta/tokens', `nodes/${oldManager.nodeId}`, `nodes/${nodeJson(w1Dir).nodeId}`]),
    );
    expectNoSecrets(file, {
      'worker token': workerToken,
      "worker token's secret": workerToken.split('-')[3]!,
      'manager token': managerToken,
      "manager token's secret": managerToken.split('-')[3]!,
      'CA key PEM': readFileSync(root.key, 'utf8').split('\n').slice(1, -2).join('\n'),
      'CA key DER': derOf(readFileSync(root.key, 'utf8')),
      'data key': Buffer.from(dataKeyText, 'base64'),
      'data key text': dataKeyText,
      'backup key': backupKey,
      'backup key bytes': Buffer.from(backupKey.slice('SWMKEY-1-'.length), 'base64'),
    });
    // The key went to the operator's terminal only: not to the manager's log.
    expect(manager.stdout() + manager.stderr()).not.toContain(backupKey);
    // Over the network, even with the manager's own certificate: refused (only the local socket makes backups).
    const remote = await curl([
      '--cacert',
      join(m, 'certificates', 'root-ca.crt'),
      '--cert',
      join(m, 'certificates', 'node.crt'),
      '--key',
      join(m, 'certificates', 'node.key'),
      '-X',
      'POST',
      '-H',
      'content-type: application/json',
      '-d',
      '{}',
      `https://${address}/v1/store/backup`,
    ]);
    expect([remote.status, remote.json().code]).toEqual([403, 'AUTH_FORBIDDEN']);

    // The manager's machine is lost.
    expect(await manager.stop('SIGTERM')).toBe(0);
    rmSync(m, { recursive: true, force: true });

    // A wrong key: a clear error, and nothing written.
    const r = scratch.path('restored');
    const wrongKey = `SWMKEY-1-${Buffer.alloc(32, 9).toString('base64').replace(/=+$/, '')}`;
    const wrong = await runMuster(['store', 'restore', file, '--data-dir', r, '--listen-addr', address], { stdin: `${wrongKey}\n` });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^error: the key does not open this backup: it needs the backup key printed when it was made$/m);
    expect(existsSync(r)).toBe(false);
    // An edited file: refused once the key has opened it, nothing written.
    const edited = scratch.path('edited.json');
    const tampered = JSON.parse(readFileSync(file, 'utf8')) as { records: { key: string; value: { certExpiryMs?: number } }[] };
    tampered.records.find((x) => x.key === 'meta/cluster')!.value.certExpiryMs = 3_600_000;
    writeFileSync(edited, JSON.stringify(tampered));
    const bad = await runMuster(['store', 'restore', edited, '--data-dir', r, '--listen-addr', address], { stdin: `${backupKey}\n` });
    expect([bad.code, bad.stderr]).toEqual([1, expect.stringMatching(/^error: the backup has been damaged or edited/m)]);
    expect(existsSync(r)).toBe(false);

    // The right key, from a file.
    const keyFile = scratch.write('backup.key', `${backupKey}\n`);
    const restore = await runMuster(['store', 'restore', file, '--data-dir', r, '--listen-addr', address, '--key-file', keyFile]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toContain(`Restored cluster ${oldManager.clusterId} from ${file}`);
    expect(restore.stdout).toContain(`The backup's managers are removed and their manager certificates revoked: ${oldManager.nodeId}.`);
    expect(restore.stdout).toContain(`Start it with 'muster run --data-dir ${r}'.`);
    expect(nodeJson(r).clusterId).toBe(oldManager.clusterId);
    expect(nodeJson(r).nodeId).not.toBe(oldManager.nodeId);
    expect(readFileSync(join(r, 'certificates', 'root-ca.crt'), 'utf8')).toBe(rootBytes);
    expect(opensslStatus(['verify', '-CAfile', join(r, 'certificates', 'root-ca.crt'), join(r, 'certificates', 'node.crt')]).status).toBe(0);
    // A second restore into the same data dir is refused.
    const again = await runMuster(['store', 'restore', file, '--data-dir', r, '--key-file', keyFile]);
    expect([again.code, again.stderr]).toEqual([
      1,
      expect.stringMatching(new RegExp(`^error: ${r} already holds node \\S+ of cluster ${oldManager.clusterId}$`, 'm')),
    ]);
    const restored = start(['run', '--data-dir', r]);
    await restored.waitFor(/manager listening on/);
    // The worker that joined before renews against it, under the same root.
    const renewed = await renewNow(w1, w1Dir);
    expect(opensslStatus(['verify', '-CAfile', join(w1Dir, 'certificates', 'root-ca.crt'), join(w1Dir, 'certificates', 'node.crt')]).status).toBe(0);
    expect(renewed.issuer).toBe(certOf(r).issuer);
    // A new worker joins with the old worker token.
    const w2Dir = scratch.path('w2');
    await joinNode(w2Dir, workerToken, address);
    expect(nodeJson(w2Dir).clusterId).toBe(oldManager.clusterId);
    const ls = await runMuster(['node', 'ls', '-q', '--data-dir', r]);
    expect(ls.stdout.trim().split('\n').sort()).toEqual([nodeJson(r).nodeId, nodeJson(w1Dir).nodeId, nodeJson(w2Dir).nodeId].sort());
    // The old manager's certificate no longer opens the cluster.
    const old = scratch.path('old-manager-certs');
    const refused = await curl([
      '--cacert',
      join(old, 'root-ca.crt'),
      '--cert',
      join(old, 'node.crt'),
      '--key',
      join(old, 'node.key'),
      `https://${address}/v1/nodes`,
    ]);
    expect([refused.status, refused.json().code]).toEqual([403, 'NODE_REMOVED']);
    expect(await restored.stop('SIGTERM')).toBe(0);
  });
});

describe('backup and restore under autolock', () => {
  it('the backup opens with the unlock key, not another; the restored manager starts locked and the same key unlocks it', {
    timeout: slow(120_000),
  }, async () => {
    const m = scratch.path('lm');
    const port = await freePort();
    const manager = start(['init', '--autolock', '--data-dir', m, '--listen-addr', `127.0.0.1:${port}`]);
    const [, workerToken, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    await manager.waitFor(/SWMKEY-1-/);
    const unlockKey = keyLine(manager.stdout());
    const w1Dir = scratch.path('lw1');
    const w1 = await joinNode(w1Dir, workerToken, address);

    const file = scratch.path('locked-backup.json');
    const backup = await runMuster(['store', 'backup', '--out', file, '--data-dir', m]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stdout).toContain("It opens with the cluster's unlock key ('muster unlock-key').");
    expect(backup.stdout).not.toMatch(/SWMKEY-1-/);
    expect((JSON.parse(readFileSync(file, 'utf8')) as { dataKey: { under: string } }).dataKey.under).toBe('unlock-key');
    expectNoSecrets(file, {
      'unlock key': unlockKey,
      'unlock key bytes': Buffer.from(unlockKey.slice('SWMKEY-1-'.length), 'base64'),
      'worker token': workerToken.split('-')[3]!,
    });
    // A backup key has no place under autolock.
    const keyed = await runMuster([
      'store',
      'backup',
      '--out',
      scratch.path('x.json'),
      '--data-dir',
      m,
      '--key-file',
      scratch.write('some.key', `SWMKEY-1-${Buffer.alloc(32, 1).toString('base64').replace(/=+$/, '')}\n`),
    ]);
    expect([keyed.code, keyed.stderr]).toEqual([2, expect.stringMatching(/^error: autolock is on: a backup opens with the cluster's unlock key/m)]);
    expect(await manager.stop('SIGTERM')).toBe(0);
    rmSync(m, { recursive: true, force: true });

    const r = scratch.path('lrestored');
    const wrong = await runMuster(['store', 'restore', file, '--data-dir', r, '--listen-addr', address], {
      stdin: `SWMKEY-1-${Buffer.alloc(32, 3).toString('base64').replace(/=+$/, '')}\n`,
    });
    expect([wrong.code, wrong.stderr]).toEqual([1, expect.stringMatching(/^error: the key does not open this backup: it needs the cluster's unlock key$/m)]);
    expect(existsSync(r)).toBe(false);
    const restore = await runMuster(['store', 'restore', file, '--data-dir', r, '--listen-addr', address, '--key-file', '-'], { stdin: `${unlockKey}\n` });
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toContain("then unlock it with 'muster unlock' and the same unlock key (autolock stays on)");
    // Locked at rest: data.key wrapped, node.key sealed.
    expect(readFileSync(join(r, 'manager', 'data.key'), 'utf8').startsWith('{')).toBe(true);
    expect(readFileSync(join(r, 'certificates', 'node.key'), 'utf8')).not.toMatch(/PRIVATE KEY/);

    const restored = start(['run', '--data-dir', r]);
    await restored.waitFor(/this manager is locked/);
    const unlock = await runMuster(['unlock', '--data-dir', r], { stdin: `${unlockKey}\n` });
    expect(unlock.code, unlock.stderr).toBe(0);
    await restored.waitFor(/manager listening on/);
    expect((await runMuster(['unlock-key', '-q', '--data-dir', r])).stdout.trim()).toBe(unlockKey);
    await renewNow(w1, w1Dir);
    expect(await restored.stop('SIGTERM')).toBe(0);
  });
});

describe('backup of an etcd cluster', () => {
  it('the dump comes from etcd; the restore founds a one-manager cluster on the embedded store, and the worker renews against it', {
    timeout: slow(120_000),
  }, async () => {
    etcd = await startEtcd();
    const m = scratch.path('em');
    const port = await freePort();
    const manager = start(['init', '--data-dir', m, '--listen-addr', `127.0.0.1:${port}`, '--store', etcd.storeFlag]);
    const [, workerToken, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    await manager.waitFor(/manager listening on/);
    const w1Dir = scratch.path('ew1');
    const w1 = await joinNode(w1Dir, workerToken, address);
    const file = scratch.path('etcd-backup.json');
    const backup = await runMuster(['store', 'backup', '--out', file, '--data-dir', m]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stdout).toMatch(/records at store revision \d+, from etcd 127\.0\.0\.1:\d+\)/);
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { records: { key: string }[] };
    expect(parsed.records.some((x) => x.key.startsWith('managers/'))).toBe(false); // the live registration is not state
    expect(parsed.records.map((x) => x.key)).toContain(`nodes/${nodeJson(w1Dir).nodeId}`);
    expect(await manager.stop('SIGTERM')).toBe(0);

    const r = scratch.path('erestored');
    const restore = await runMuster(['store', 'restore', file, '--data-dir', r, '--listen-addr', address], { stdin: `${keyLine(backup.stdout)}\n` });
    expect(restore.code, restore.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(r, 'manager', 'store.json'), 'utf8'))).toEqual({ kind: 'level' });
    const restored = start(['run', '--data-dir', r]);
    await restored.waitFor(/manager listening on/);
    await renewNow(w1, w1Dir);
    expect(nodeJson(r).clusterId).toBe(nodeJson(w1Dir).clusterId);
    expect(await restored.stop('SIGTERM')).toBe(0);
  });
});
