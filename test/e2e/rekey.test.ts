/**
 * Removal re-keys (issue 27 item 4), with real muster processes on a real
 * etcd: demoting a manager replaces the cluster data key and the manager
 * that stays serves on with it; "the removed-manager attack": every file of
 * a manager copied before it is demoted and removed opens nothing in the
 * store after `muster ca --rotate`, and a certificate made with the old CA
 * key is refused; under autolock a manager that follows a re-key still
 * starts after `muster unlock`.
 */
import { cpSync, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { silentLogger } from '../../src/core/logger.js';
import { dataKeyId } from '../../src/manager/state/data-key.js';
import { SEAL_CONTEXT } from '../../src/manager/state/signer.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { unseal } from '../../src/pki/seal.js';
import { KEYS } from '../../src/store/cluster-store.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import { runMuster, type ChildRun } from '../helpers/cli.js';
import { codeOf } from '../helpers/codes.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { openssl, scratchDir } from '../helpers/openssl.js';
import { FAST_ENV, processScope, waitUntil } from '../helpers/processes.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-rekey-');
const clusters: EtcdCluster[] = [];
const stores: EtcdStore[] = [];
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(clusters.map((c) => c.stop()));
  scratch.cleanup();
});
const { start, joinNode } = processScope(FAST_ENV);

const dataKeyText = (dir: string): string => readFileSync(join(dir, 'manager', 'data.key'), 'utf8');
const nodeJson = (dir: string): { nodeId: string; clusterId: string } => JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8'));
const certs = (dir: string): string => join(dir, 'certificates');

/** Founds a cluster on a fresh etcd and joins a second manager with the manager token. */
async function twoManagers(name: string, extra: string[] = []) {
  const etcd = await startEtcd();
  clusters.push(etcd);
  const f = scratch.path(`${name}-f`);
  const m2 = scratch.path(`${name}-m2`);
  const founder = start(['init', '--data-dir', f, '--listen-addr', '127.0.0.1:0', '--store', etcd.storeFlag, ...extra]);
  const unlockKey = extra.includes('--autolock') ? (await founder.waitFor(/^ {4}(SWMKEY-1-\S+)$/m))[1]! : undefined;
  const [, workerToken, address] = (await founder.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
  const managerToken = (await runMuster(['join-token', '-q', 'manager', '--data-dir', f])).stdout.trim();
  const second = await joinNode(m2, managerToken, address, ['--listen-addr', '127.0.0.1:0']);
  await second.waitFor(/manager listening on/);
  const store = await EtcdStore.connect({ connection: { endpoints: etcd.endpoints }, clusterId: nodeJson(f).clusterId, logger: silentLogger });
  stores.push(store);
  return { etcd, f, m2, founder, second, address, workerToken, unlockKey, store };
}

/** A client presenting `certPem`/`keyPem` to the manager at `address`. */
function clientWith(address: string, rootPem: string, certPem: string, keyPem: string): ApiClient {
  return new ApiClient({ managers: [address], tls: { rootPem, certPem, keyPem } });
}

describe('a manager demoted and removed', () => {
  it('re-keys: the other manager serves on with a new data.key; copied files open nothing after ca --rotate, and certificates made with the old CA key are refused', {
    timeout: slow(180_000),
  }, async () => {
    const { f, m2, second, address, workerToken, store } = await twoManagers('attack');
    const clusterId = nodeJson(f).clusterId;
    const keyBefore = dataKeyText(f);
    expect(dataKeyText(m2)).toBe(keyBefore);
    expect(Object.keys((await store.get(KEYS.dataKey))!.value.wraps).sort()).toEqual([nodeJson(f).nodeId, nodeJson(m2).nodeId].sort());

    // The attacker: every file of the second manager, and the store as that manager could read it.
    const copy = scratch.path('attack-m2-copy');
    cpSync(m2, copy, { recursive: true, filter: (path) => !lstatSync(path).isSocket() }); // every file (the control socket is no file)
    const stolenKey = Buffer.from(dataKeyText(copy).trim(), 'base64');
    const oldCa = (await store.get(KEYS.ca))!.value;
    const oldCaKeyPem = unseal(stolenKey, oldCa.key!, SEAL_CONTEXT.caKey).toString('utf8'); // the copy did open the CA key of its day

    const m2Id = nodeJson(m2).nodeId;
    const demoted = await runMuster(['node', 'demote', m2Id, '--data-dir', f]);
    expect(demoted.code, demoted.stderr).toBe(0);
    expect(demoted.stdout).toMatch(/knew the current CA key/);
    expect(demoted.stdout).toMatch(/muster ca --rotate/);
    await second.waitFor(/demoted: this node no longer serves as a manager/, slow(30_000));

    // The founder re-keyed and holds the new key in data.key; the stolen key opens nothing in the store.
    await waitUntil('the founder wrote the new data key', () => dataKeyText(f) !== keyBefore);
    const record = (await store.get(KEYS.dataKey))!.value;
    expect(dataKeyId(Buffer.from(dataKeyText(f).trim(), 'base64'))).toBe(record.keyId);
    expect(Object.keys(record.wraps)).toEqual([nodeJson(f).nodeId]);
    const rekeyedCa = (await store.get(KEYS.ca))!.value;
    expect(() => unseal(stolenKey, rekeyedCa.key!, SEAL_CONTEXT.caKey)).toThrow();

    // It serves on: a worker joins, and renews.
    const w = scratch.path('attack-w');
    await joinNode(w, workerToken, address);
    const workerKey = generateNodeKeySync();
    const worker = clientWith(
      address,
      readFileSync(join(certs(w), 'root-ca.crt'), 'utf8'),
      readFileSync(join(certs(w), 'node.crt'), 'utf8'),
      readFileSync(join(certs(w), 'node.key'), 'utf8'),
    );
    expect((await worker.call('renew', { body: { csr: createCsr({ privateKey: workerKey.privateKey }) } })).role).toBe('worker');
    await worker.close();

    const removed = await runMuster(['node', 'rm', '--force', m2Id, '--data-dir', f]);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).not.toMatch(/knew the current CA key/); // a worker by now: the demotion said it
    await second.stop('SIGTERM');

    const rotated = await runMuster(['ca', '--rotate', '--data-dir', f], { env: FAST_ENV });
    expect(rotated.code, rotated.stderr).toBe(0);

    // Read the store directly: nothing in it opens with the copied data key, the new root's key least of all.
    const ca = (await store.get(KEYS.ca))!.value;
    expect(ca.rootPem).not.toBe(oldCa.rootPem);
    expect(ca.rotation).toBeUndefined();
    expect(() => unseal(stolenKey, ca.key!, SEAL_CONTEXT.caKey)).toThrow();
    for (const previous of ca.previous ?? []) expect(() => unseal(stolenKey, previous.key!, SEAL_CONTEXT.caKey)).toThrow();
    const tokens = (await store.get(KEYS.tokens))!.value;
    for (const role of ['worker', 'manager'] as const) {
      const stored = tokens[role];
      expect(typeof stored).not.toBe('string');
      if (typeof stored !== 'string') expect(() => unseal(stolenKey, stored.sealed, `${KEYS.tokens.key} ${role}`)).toThrow();
    }

    // Certificates the attacker makes with the old CA key: for the removed manager, and for the serving manager with the serial it serves with now.
    const founderNode = (await store.get(KEYS.nodes.ref(nodeJson(f).nodeId)))!.value;
    const root = scratch.write('attack-old-root.pem', oldCa.rootPem);
    const caKey = scratch.write('attack-old-ca.key', oldCaKeyPem);
    const ext = scratch.write(
      'attack-ext.cnf',
      '[v]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n',
    );
    const newRoot = readFileSync(join(certs(f), 'root-ca.crt'), 'utf8');
    for (const [cn, serial, refused] of [
      [m2Id, 'A1B2C3D4', 'NODE_REMOVED'],
      // The serial the founder serves with is no secret (its TLS handshake shows it): the record pins the certificate itself.
      [founderNode.id, founderNode.certSerial, 'CERT_UNTRUSTED'],
    ] as const) {
      const key = scratch.path(`attack-${cn}.key`);
      const csr = scratch.path(`attack-${cn}.csr`);
      const crt = scratch.path(`attack-${cn}.crt`);
      openssl([
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-out',
        csr,
        '-subj',
        `/O=${clusterId}/OU=swarm-manager/CN=${cn}`,
      ]);
      openssl([
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        root,
        '-CAkey',
        caKey,
        '-set_serial',
        `0x${serial}`,
        '-days',
        '1',
        '-extfile',
        ext,
        '-extensions',
        'v',
        '-out',
        crt,
      ]);
      const forged = clientWith(address, `${newRoot}${oldCa.rootPem}`, readFileSync(crt, 'utf8'), readFileSync(key, 'utf8'));
      const code = await codeOf(forged.call('joinTokens'));
      await forged.close();
      expect(code, cn).toBe(refused);
    }
  });
});

describe('autolock and a re-key', () => {
  let back: ChildRun | undefined;
  it('a locked manager follows a re-key (data.key re-wrapped, node.key re-sealed) and starts again after muster unlock', {
    timeout: slow(150_000),
  }, async () => {
    const { f, m2, second, unlockKey } = await twoManagers('lock', ['--autolock']);
    await waitUntil('the second manager wrapped its data key', () => dataKeyText(m2).startsWith('{'));
    const before = { dataKey: dataKeyText(m2), nodeKey: readFileSync(join(certs(m2), 'node.key'), 'utf8') };
    // A root rotation re-keys; the second manager follows through the store's change feed.
    const rotate = await runMuster(['ca', '--rotate', '--detach', '--data-dir', f]);
    expect(rotate.code, rotate.stderr).toBe(0);
    await waitUntil('the second manager re-wrapped its data key', () => dataKeyText(m2) !== before.dataKey && !dataKeyText(m2).includes('retired'));
    await waitUntil('the second manager re-sealed its node key', () => readFileSync(join(certs(m2), 'node.key'), 'utf8') !== before.nodeKey);
    expect(readFileSync(join(certs(m2), 'node.key'), 'utf8')).not.toMatch(/PRIVATE KEY/);
    expect(await second.stop('SIGTERM')).toBe(0);
    back = start(['run', '--data-dir', m2]);
    await back.waitFor(/this manager is locked/);
    const unlocked = await runMuster(['unlock', '--data-dir', m2], { env: { MUSTER_UNLOCK_KEY: unlockKey! } });
    expect(unlocked.code, unlocked.stderr).toBe(0);
    await back.waitFor(/manager listening on/);
    const ls = await runMuster(['node', 'ls', '--data-dir', m2]);
    expect(ls.code, ls.stderr).toBe(0);
    expect(back.stderr()).not.toMatch(/could not follow the new data key|"level":"error"/);
  });
});
