/**
 * A manager's own files under autolock (the LocalLock of manager/services/autolock.ts,
 * and the KeyCipher of its node key). With autolock on:
 * - manager/data.key holds the data key wrapped with AES-256-GCM under a key
 *   derived from the unlock key (token/unlock-key.ts: HKDF-SHA256);
 * - certificates/node.key is sealed under the data key (pki/sealed-key.ts);
 * - the etcd client key in manager/store.json is sealed under the data key.
 * So one atomic rename of data.key is all a rotation or a change of the
 * setting needs to switch keys; node.key and store.json change only when
 * autolock is turned on or off, in an order (seal first, wrap last; unwrap
 * first, open last) that a crash cannot turn into a manager nobody can open.
 *
 * After a rotation data.key is wrapped under the previous key too, for
 * PREVIOUS_KEY_WINDOW_MS from the rotation; a running manager then drops that
 * wrap, once the store holds the new key (a rotation prepared here whose
 * commit failed keeps the key the store holds). A manager that was down
 * during the rotation still opens with the previous key, until it has been
 * unlocked once.
 *
 * A re-key of the cluster (manager/state/data-key.ts) moves all three to the new
 * data key: data.key first, holding the new key with the old one sealed
 * under it (`retired`), then node.key and store.json, then data.key without
 * the old key. Opening a data dir a crash left in between finishes the move.
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import { failpoint } from '../core/failpoint.js';
import type { Logger } from '../core/logger.js';
import { seal, unseal } from '../pki/seal.js';
import { keyEncryptionKey, unlockKeyId } from '../token/unlock-key.js';
import {
  readDataKeyFile,
  readStoreSpec,
  writeDataKeyFile,
  writeStoreSpec,
  type DataKeyWrap,
  type StoreSpec,
  type WrappedDataKey,
} from '../config/manager-files.js';
import type { DataDirLayout } from '../config/paths.js';
import { KeyStore, type KeyCipher } from '../agent/key-store.js';
import type { AutolockDesired, LocalLock as LocalLockPort } from '../manager/services/autolock.js';

/** How long the key before a rotation still opens a running manager's data key. */
export const PREVIOUS_KEY_WINDOW_MS = 10 * 60_000;

const DATA_KEY_CONTEXT = 'manager/data.key';
const STORE_KEY_CONTEXT = 'manager/store.json key';
const RETIRED_CONTEXT = 'manager/data.key retired';

/** The data key wrapped under one unlock key. */
function wrapUnder(unlockKey: Buffer, dataKey: Buffer): DataKeyWrap {
  return { keyId: unlockKeyId(unlockKey), sealed: seal(keyEncryptionKey(unlockKey), dataKey, DATA_KEY_CONTEXT) };
}

function wrappedFile(wraps: DataKeyWrap[], until: number): WrappedDataKey {
  return { format: 'muster-wrapped-data-key/1', kdf: 'HKDF-SHA256', wraps, ...(wraps.length > 1 ? { previousUntil: until } : {}) };
}

/** data.key for a manager under autolock from the start (a restore): the data key wrapped under `unlockKey` alone. */
export function wrappedDataKey(unlockKey: Buffer, dataKey: Buffer): WrappedDataKey {
  return wrappedFile([wrapUnder(unlockKey, dataKey)], 0);
}

/** store.json with the etcd client key in clear (for connecting), from either shape. */
export function openStoreSpec(spec: StoreSpec, dataKey: Buffer): StoreSpec {
  if (spec.kind !== 'etcd' || spec.keySealed === undefined) return spec;
  const { keySealed, ...rest } = spec;
  return { ...rest, keyPem: unseal(dataKey, keySealed, STORE_KEY_CONTEXT).toString('utf8') };
}

/** store.json with the etcd client key sealed under `next`, from one sealed under `previous` (or `next`); undefined when nothing is sealed. */
function resealStoreSpec(spec: StoreSpec | undefined, previous: Buffer, next: Buffer): StoreSpec | undefined {
  if (spec?.kind !== 'etcd' || spec.keySealed === undefined) return undefined;
  let opened: StoreSpec;
  try {
    opened = openStoreSpec(spec, next);
    return undefined; // sealed under the new key already
  } catch {
    opened = openStoreSpec(spec, previous);
  }
  return sealStoreSpec(opened, next);
}

/**
 * Finishes a re-key a crash interrupted (data.key holds the key before it as
 * `retired`): node.key and store.json sealed under the new key, then data.key
 * without the old one.
 */
async function finishRekey(layout: DataDirLayout, wrapped: WrappedDataKey, dataKey: Buffer): Promise<void> {
  if (wrapped.retired === undefined) return;
  const previous = unseal(dataKey, wrapped.retired, RETIRED_CONTEXT);
  const cipher: KeyCipher = { dataKey: () => dataKey, previousDataKey: () => previous, sealing: () => true };
  await new KeyStore(layout, { cipher }).rewriteKey({ reseal: true });
  const spec = resealStoreSpec(await readStoreSpec(layout), previous, dataKey);
  if (spec !== undefined) await writeStoreSpec(layout, spec);
  const { retired: _retired, ...rest } = wrapped;
  await writeDataKeyFile(layout, { wrapped: rest });
}

function sealStoreSpec(spec: StoreSpec, dataKey: Buffer): StoreSpec {
  if (spec.kind !== 'etcd' || spec.keyPem === undefined) return spec;
  const { keyPem, ...rest } = spec;
  return { ...rest, keySealed: seal(dataKey, keyPem, STORE_KEY_CONTEXT) };
}

/**
 * Opens a manager's data key with an unlock key, all or nothing: the key
 * must open data.key, node.key and the store client key, or nothing is
 * unlocked. UNLOCK_KEY_WRONG for a key that opens none of them.
 */
export async function openWithUnlockKey(layout: DataDirLayout, unlockKey: Buffer): Promise<Buffer> {
  const file = await readDataKeyFile(layout);
  if (!file.locked) throw new MusterError('NOT_LOCKED', 'autolock is off on this manager: its data key is not wrapped');
  const wrap = file.wrapped.wraps.find((w) => w.keyId === unlockKeyId(unlockKey));
  if (wrap === undefined) throw new MusterError('UNLOCK_KEY_WRONG');
  let dataKey: Buffer;
  try {
    dataKey = unseal(keyEncryptionKey(unlockKey), wrap.sealed, DATA_KEY_CONTEXT);
  } catch {
    throw new MusterError('UNLOCK_KEY_WRONG');
  }
  await finishRekey(layout, file.wrapped, dataKey);
  const fixed: KeyCipher = { dataKey: () => dataKey, sealing: () => true };
  await new KeyStore(layout, { cipher: fixed }).load({ recover: true }); // node.key opens and matches its certificate
  const spec = await readStoreSpec(layout);
  if (spec !== undefined) openStoreSpec(spec, dataKey);
  return dataKey;
}

/** One manager's files following the cluster's autolock setting. */
export class LocalLock implements LocalLockPort, KeyCipher {
  private sealingNow: boolean;
  private dropTimer: TimerHandle | undefined;
  /** The unlock key the store last said (apply): only then is the wrap under the one before it dropped. */
  private appliedKeyId: string | undefined;
  private readonly keyStore: KeyStore;
  /** The data key; a re-key of the cluster replaces it. */
  private dataKeyNow: Buffer;
  /** The key before, while a re-key moves node.key and store.json off it. */
  private previousKey: Buffer | undefined;

  constructor(
    private readonly deps: { layout: DataDirLayout; dataKey: Buffer; clock: Clock; logger: Logger },
    /** Whether node.key is sealed now (it stays so until the setting says otherwise). */
    sealed: boolean,
  ) {
    this.sealingNow = sealed;
    this.dataKeyNow = deps.dataKey;
    this.keyStore = new KeyStore(deps.layout, { cipher: this });
  }

  dataKey(): Buffer {
    return this.dataKeyNow;
  }

  previousDataKey(): Buffer | undefined {
    return this.previousKey;
  }

  async rekey(next: Buffer, desired: AutolockDesired): Promise<void> {
    const { layout, logger } = this.deps;
    const previous = this.dataKeyNow;
    if (previous.equals(next)) return;
    const file = await readDataKeyFile(layout);
    const wrapped = file.locked && desired.enabled;
    // data.key first, with the key before it: whatever a crash leaves, the file opens node.key and store.json (see finishRekey).
    if (wrapped)
      await writeDataKeyFile(layout, { wrapped: { ...wrappedFile([wrapUnder(desired.unlockKey, next)], 0), retired: seal(next, previous, RETIRED_CONTEXT) } });
    else await writeDataKeyFile(layout, { key: next });
    failpoint('rekey:data-key');
    this.previousKey = previous;
    this.dataKeyNow = next;
    try {
      await this.keyStore.rewriteKey({ reseal: true });
      const spec = resealStoreSpec(await readStoreSpec(layout), previous, next);
      if (spec !== undefined) await writeStoreSpec(layout, spec);
      if (wrapped) await writeDataKeyFile(layout, { wrapped: wrappedFile([wrapUnder(desired.unlockKey, next)], 0) });
    } finally {
      this.previousKey = undefined;
    }
    logger.info({ wrapped }, 'manager/data.key holds the new cluster data key');
  }

  sealing(): boolean {
    return this.sealingNow;
  }

  async apply(desired: AutolockDesired): Promise<void> {
    const { layout, logger, clock } = this.deps;
    const dataKey = this.dataKeyNow;
    const file = await readDataKeyFile(layout);
    this.appliedKeyId = desired.enabled ? unlockKeyId(desired.unlockKey) : undefined;
    if (!desired.enabled) {
      if (file.locked) {
        await writeDataKeyFile(layout, { key: dataKey });
        logger.info({}, 'autolock off: the data key is no longer wrapped');
      }
      if (file.locked) failpoint('autolock:data-key');
      this.sealingNow = false;
      if (await this.keyStore.rewriteKey()) failpoint('autolock:node-key');
      if (await this.rewriteStoreSpec(false)) failpoint('autolock:store-json');
      return;
    }
    this.sealingNow = true;
    if (await this.keyStore.rewriteKey()) failpoint('autolock:node-key');
    if (await this.rewriteStoreSpec(true)) failpoint('autolock:store-json');
    const id = unlockKeyId(desired.unlockKey);
    if (file.locked && file.wrapped.wraps[0]!.keyId === id) {
      await this.dropPrevious(file.wrapped);
      return;
    }
    // Wrapped under a key the store no longer holds (a rotation, or one that failed to commit): the new
    // key first, the one before for PREVIOUS_KEY_WINDOW_MS.
    const wraps = [wrapUnder(desired.unlockKey, dataKey), ...(file.locked ? [file.wrapped.wraps[0]!] : [])];
    await writeDataKeyFile(layout, { wrapped: wrappedFile(wraps, clock.now() + PREVIOUS_KEY_WINDOW_MS) });
    failpoint('autolock:data-key');
    logger.info({ keyId: id }, file.locked ? 'data key wrapped under the new unlock key' : 'autolock on: the data key is wrapped under the unlock key');
    if (wraps.length > 1) this.scheduleDrop(PREVIOUS_KEY_WINDOW_MS);
  }

  async prepareRotation(next: Buffer): Promise<void> {
    const { layout, clock } = this.deps;
    const dataKey = this.dataKeyNow;
    const file = await readDataKeyFile(layout);
    if (!file.locked) throw new MusterError('AUTOLOCK_OFF', 'this manager has not wrapped its data key yet');
    await writeDataKeyFile(layout, { wrapped: wrappedFile([wrapUnder(next, dataKey), file.wrapped.wraps[0]!], clock.now() + PREVIOUS_KEY_WINDOW_MS) });
  }

  /** Drops the previous key's wrap once its window has passed (a running manager; also called at start). */
  async dropPrevious(wrapped?: WrappedDataKey): Promise<void> {
    const current = wrapped ?? (await readDataKeyFile(this.deps.layout).then((f) => (f.locked ? f.wrapped : undefined)));
    if (current === undefined || current.wraps.length < 2) return;
    // Prepared for a rotation the store has not taken (yet, or ever): both keys stay.
    if (current.wraps[0]!.keyId !== this.appliedKeyId) return;
    const left = (current.previousUntil ?? 0) - this.deps.clock.now();
    if (left > 0) {
      this.scheduleDrop(left);
      return;
    }
    await writeDataKeyFile(this.deps.layout, { wrapped: wrappedFile([current.wraps[0]!], 0) });
    this.deps.logger.info({}, 'the unlock key before the last rotation no longer opens this manager');
  }

  /** Arms the drop for `ms` from now; a timer armed before (an earlier window) is replaced, it would fire a window late. */
  private scheduleDrop(ms: number): void {
    this.dropTimer?.cancel();
    this.dropTimer = this.deps.clock.setTimer(ms + 1_000, () => {
      this.dropTimer = undefined;
      void this.dropPrevious().catch((error: unknown) => this.deps.logger.warn({ code: (error as MusterError).code }, 'cannot drop the previous unlock key'));
    });
  }

  /** Seals or opens the etcd client key in store.json; true when it wrote. */
  private async rewriteStoreSpec(sealed: boolean): Promise<boolean> {
    const spec = await readStoreSpec(this.deps.layout);
    if (spec?.kind !== 'etcd') return false;
    const next = sealed ? sealStoreSpec(spec, this.dataKeyNow) : openStoreSpec(spec, this.dataKeyNow);
    if (next === spec) return false;
    await writeStoreSpec(this.deps.layout, next);
    return true;
  }

  /** Before the manager files go (a demotion): node.key back in clear, so the node keeps its identity. */
  async release(): Promise<void> {
    this.sealingNow = false;
    await this.keyStore.rewriteKey();
  }

  /** Stops the timer. */
  stop(): void {
    this.dropTimer?.cancel();
    this.dropTimer = undefined;
  }
}
