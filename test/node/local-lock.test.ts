/**
 * A manager's files under autolock, on a real data dir: wrap and unwrap,
 * node.key and the etcd client key sealed and opened, all-or-nothing
 * unlocking, and the previous key's window after a rotation (fake clock).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/core/clock.js';
import { isMusterError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { seededRandom } from '../../src/core/random.js';
import { dataDirLayout } from '../../src/config/paths.js';
import { readDataKeyFile, readStoreSpec, writeManagerFiles } from '../../src/config/manager-files.js';
import { createRootCa } from '../../src/pki/ca.js';
import { generateDataKey } from '../../src/pki/seal.js';
import { sealNodeKey } from '../../src/pki/sealed-key.js';
import { KeyStore } from '../../src/agent/key-store.js';
import { LocalLock, PREVIOUS_KEY_WINDOW_MS, openStoreSpec, openWithUnlockKey } from '../../src/node/local-lock.js';
import { scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir('muster-locallock-');
afterAll(() => scratch.cleanup());

async function managerDir(name: string) {
  const layout = dataDirLayout(scratch.path(name));
  const clock = new FakeClock();
  const own = createRootCa({ clusterId: 'c', clock, random: seededRandom(name) }); // any key with a certificate that matches it
  const store = new KeyStore(layout);
  await store.ensureDirs();
  await store.writePair({ keyPem: own.keyPem, certPem: own.certPem, rootPem: own.certPem });
  const dataKey = generateDataKey();
  const clientKey = createRootCa({ clusterId: 'etcd', clock, random: seededRandom(2) }).keyPem;
  await writeManagerFiles(layout, { store: { kind: 'etcd', endpoints: ['127.0.0.1:2379'], keyPem: clientKey }, dataKey });
  return { layout, clock, dataKey, ownKey: own.keyPem, clientKey, lock: new LocalLock({ layout, dataKey, clock, logger: silentLogger }, false) };
}

const failsWith = async (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    () => 'resolved',
    (error: unknown) => (isMusterError(error) ? error.code : String(error)),
  );

describe('LocalLock', () => {
  it('turning on seals node.key and the etcd client key and wraps the data key; only the unlock key opens them; turning off undoes it', async () => {
    const { layout, dataKey, ownKey, clientKey, lock } = await managerDir('on-off');
    const k1 = Buffer.alloc(32, 1);
    await lock.apply({ enabled: true, unlockKey: k1 });
    expect(readFileSync(layout.nodeKey, 'utf8')).toMatch(/^-----BEGIN MUSTER SEALED NODE KEY-----/);
    expect(readFileSync(layout.storeJson, 'utf8')).not.toContain('PRIVATE KEY');
    expect((await readDataKeyFile(layout)).locked).toBe(true);
    expect(await failsWith(new KeyStore(layout).load())).toBe('MANAGER_LOCKED');
    expect(await failsWith(openWithUnlockKey(layout, Buffer.alloc(32, 9)))).toBe('UNLOCK_KEY_WRONG');
    expect((await openWithUnlockKey(layout, k1)).equals(dataKey)).toBe(true);
    expect((await new KeyStore(layout, { cipher: lock }).load())?.keyPem).toBe(ownKey);
    expect(openStoreSpec((await readStoreSpec(layout))!, dataKey)).toMatchObject({ keyPem: clientKey });

    await lock.apply({ enabled: false });
    expect(readFileSync(layout.nodeKey, 'utf8')).toBe(ownKey);
    expect(await readStoreSpec(layout)).toEqual({ kind: 'etcd', endpoints: ['127.0.0.1:2379'], keyPem: clientKey });
    expect(await readDataKeyFile(layout)).toEqual({ locked: false, key: dataKey });
    expect(await failsWith(openWithUnlockKey(layout, k1))).toBe('NOT_LOCKED');
  });

  it('is all or nothing: a key that opens data.key but not node.key unlocks nothing', async () => {
    const { layout, ownKey, lock } = await managerDir('partial');
    const k1 = Buffer.alloc(32, 1);
    await lock.apply({ enabled: true, unlockKey: k1 });
    writeFileSync(layout.nodeKey, sealNodeKey(generateDataKey(), ownKey), { mode: 0o600 }); // sealed under another cluster's data key
    expect(await failsWith(openWithUnlockKey(layout, k1))).toBe('STATE_CORRUPT');
  });

  it('after a rotation both keys open it for the window, then only the new one', async () => {
    const { layout, clock, dataKey, lock } = await managerDir('rotate');
    const [k1, k2] = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    await lock.apply({ enabled: true, unlockKey: k1 });
    await lock.prepareRotation(k2);
    await lock.apply({ enabled: true, unlockKey: k2 });
    for (const key of [k1, k2]) expect((await openWithUnlockKey(layout, key)).equals(dataKey)).toBe(true);
    clock.advance(PREVIOUS_KEY_WINDOW_MS - 1_000);
    await lock.dropPrevious();
    expect((await openWithUnlockKey(layout, k1)).equals(dataKey)).toBe(true);
    clock.advance(2_001); // the lock's own timer fires
    await expect.poll(async () => failsWith(openWithUnlockKey(layout, k1))).toBe('UNLOCK_KEY_WRONG');
    expect((await openWithUnlockKey(layout, k2)).equals(dataKey)).toBe(true);
    lock.stop();
  });

  it('the manager that served a rotation soon after autolock was turned on drops the old key when the window ends, not a window later', async () => {
    const { layout, clock, dataKey, lock } = await managerDir('rotate-soon');
    const [k1, k2] = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    await lock.apply({ enabled: true, unlockKey: k1 }); // init --autolock: wrapped as the manager starts
    clock.advance(5 * 60_000);
    await lock.prepareRotation(k2);
    await lock.apply({ enabled: true, unlockKey: k2 }); // the store holds k2 now
    clock.advance(PREVIOUS_KEY_WINDOW_MS - 1_000);
    expect((await openWithUnlockKey(layout, k1)).equals(dataKey)).toBe(true);
    clock.advance(2_001);
    await expect.poll(async () => failsWith(openWithUnlockKey(layout, k1))).toBe('UNLOCK_KEY_WRONG');
    expect((await openWithUnlockKey(layout, k2)).equals(dataKey)).toBe(true);
    lock.stop();
  });

  it('a rotation the store never took keeps the key the store holds, however long it waits', async () => {
    const { layout, clock, dataKey, lock } = await managerDir('rotate-uncommitted');
    const [k1, k2] = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    await lock.apply({ enabled: true, unlockKey: k1 });
    clock.advance(5 * 60_000);
    await lock.prepareRotation(k2); // the commit then failed, and so did re-reading the store
    clock.advance(3 * PREVIOUS_KEY_WINDOW_MS);
    await lock.dropPrevious();
    expect((await openWithUnlockKey(layout, k1)).equals(dataKey)).toBe(true);
    lock.stop();
  });
});
