/**
 * Autolock, the cluster side (SwarmKit's controlapi cluster update and
 * manager/deks.go): the setting and the unlock key live in the store
 * (`meta/autolock`, the key sealed under the data key), and every manager
 * makes its own files follow it through its LocalLock: the data key wrapped
 * under the unlock key, node.key and the store client key sealed under the
 * data key. The manager that takes an API call applies the change to its own
 * files before it answers; the others follow the change feed.
 *
 * Order of steps, so that a crash anywhere leaves a manager that opens with
 * a key someone has: turning on commits, answers with the key, and only then
 * wraps this manager's data key (a manager killed before it wrapped is still
 * in clear, and wraps when it starts); a rotation wraps under both keys
 * first, then commits and answers (the old key works whether or not the
 * commit happened, the new one once it did); turning off commits, then
 * unwraps. The change feed would apply a change at once, so the manager that
 * makes one holds its own application back until the answer has gone
 * (`Change.applied`), for at most HOLD_MS.
 */
import type { Clock } from '../../core/clock.js';
import { MusterError } from '../../core/errors.js';
import { failpoint } from '../../core/failpoint.js';
import type { Logger } from '../../core/logger.js';
import type { Random } from '../../core/random.js';
import { seal, unseal } from '../../pki/seal.js';
import { formatUnlockKey, generateUnlockKey, unlockKeyId } from '../../token/unlock-key.js';
import { KEYS, transact, type ClusterStore, type Tx } from '../../store/cluster-store.js';
import { SCHEMA_VERSION, type AutolockRecord } from '../../store/records.js';
import type { UnlockKeyView } from '../../api/schemas.js';
import type { Audit } from './audit.js';
import { who, type Caller } from '../state/caller.js';
import type { DataKeyRing } from '../state/data-key.js';

/** What a manager's files should look like. */
export type AutolockDesired = { enabled: false } | { enabled: true; unlockKey: Buffer };

/** A manager's own files under autolock (the CLI's node process implements it). */
export interface LocalLock {
  /** Makes the files follow `desired`: wrap, rewrap or unwrap the data key; seal or open node.key and the store client key. Idempotent. */
  apply(desired: AutolockDesired): Promise<void>;
  /** Before a rotation commits: wrap the data key under `next` as well as under the key it is wrapped under now. */
  prepareRotation(next: Buffer): Promise<void>;
  /** The cluster re-keyed: the data key in data.key (wrapped as `desired` says), and everything sealed under it, move to `dataKey`. */
  rekey(dataKey: Buffer, desired: AutolockDesired): Promise<void>;
}

/** What the service works with. */
export interface AutolockDeps {
  store: ClusterStore;
  /** The cluster data key the unlock key is sealed under (it changes when the cluster re-keys). */
  dataKeys: DataKeyRing;
  clock: Clock;
  random: Random;
  logger: Logger;
  audit: Audit;
  /** This manager's files; absent for a manager without a data dir (in-process tests). */
  local?: LocalLock;
}

/** The store context the unlock key is sealed under. */
const CONTEXT = KEYS.autolock.key;

/** The longest a change waits for its answer to go before this manager's files follow it. */
const HOLD_MS = 10_000;

/** A committed change: call `applied` once the answer has been sent; this manager's files then follow it. */
export interface Change<T> {
  result: T;
  applied: () => Promise<void>;
}

/** The store record of the setting: on with `unlockKey` (sealed under the data key), or off. */
export function autolockRecord(dataKey: Buffer, unlockKey: Buffer | undefined, now: number): AutolockRecord {
  if (unlockKey === undefined) return { schema: SCHEMA_VERSION, enabled: false, changedAt: now };
  return { schema: SCHEMA_VERSION, enabled: true, unlockKey: seal(dataKey, unlockKey, CONTEXT), keyId: unlockKeyId(unlockKey), changedAt: now };
}

/** The cluster's autolock setting and unlock key. */
export class Autolock {
  private record: AutolockRecord | undefined;
  private version = 0;
  private following: Promise<void> = Promise.resolve();
  private unwatch: (() => void) | undefined;
  /** Applications wait for this: a change made here is applied after its answer has gone. */
  private gate: Promise<void> = Promise.resolve();
  private openGate: () => void = () => {};

  constructor(private readonly deps: AutolockDeps) {}

  /** Reads the setting, makes this manager's files follow it, and follows the change feed. */
  async start(): Promise<void> {
    this.unwatch = this.deps.store.watch(KEYS.autolock.key, () => {
      void this.refresh().catch((error: unknown) => this.deps.logger.warn({ code: (error as MusterError).code }, 'autolock: cannot follow a change'));
    });
    await this.refresh();
  }

  /** Stops following the feed and waits for a change being applied. */
  async stop(): Promise<void> {
    this.unwatch?.();
    this.openGate();
    await this.following.catch(() => undefined);
  }

  /** Whether autolock is on, as last read. */
  get enabled(): boolean {
    return this.record?.enabled === true;
  }

  /** Re-reads the record and applies it to this manager's files (one application at a time). */
  private refresh(): Promise<void> {
    this.following = this.following
      .catch(() => undefined)
      .then(() => this.gate)
      .then(async () => {
        const entry = await this.deps.store.get(KEYS.autolock);
        if (entry !== undefined && entry.version >= this.version) {
          this.record = entry.value;
          this.version = entry.version;
        }
        await this.deps.local?.apply(this.desired(this.record));
      });
    return this.following;
  }

  private desired(record: AutolockRecord | undefined): AutolockDesired {
    if (record?.enabled !== true || record.unlockKey === undefined) return { enabled: false };
    const sealed = record.unlockKey;
    return { enabled: true, unlockKey: this.deps.dataKeys.withKey((key) => unseal(key, sealed, CONTEXT)) };
  }

  /** The record for `unlockKey`, sealed under the key the store names in `tx`. */
  private async recordFor(tx: Tx, unlockKey: Buffer | undefined): Promise<AutolockRecord> {
    return autolockRecord(await this.deps.dataKeys.keyFor(tx), unlockKey, this.deps.clock.now());
  }

  /** The cluster re-keyed to `key`: this manager's files follow (after any change being applied). */
  followDataKey(key: Buffer): Promise<void> {
    const local = this.deps.local;
    if (local === undefined) return Promise.resolve();
    this.following = this.following
      .catch(() => undefined)
      .then(async () => {
        const entry = await this.deps.store.get(KEYS.autolock);
        await local.rekey(key, this.desired(entry?.value));
      });
    return this.following;
  }

  /** The unlock key (admins); AUTOLOCK_OFF when autolock is off. */
  async show(caller?: Caller): Promise<UnlockKeyView> {
    const entry = await this.deps.store.get(KEYS.autolock);
    const desired = this.desired(entry?.value);
    if (!desired.enabled) throw new MusterError('AUTOLOCK_OFF');
    if (caller !== undefined) this.deps.audit.record({ action: 'unlock-key.show', caller, result: 'ok' });
    return { unlockKey: formatUnlockKey(desired.unlockKey), keyId: unlockKeyId(desired.unlockKey) };
  }

  /** Holds this manager's applications back until `applied` (or HOLD_MS). */
  private holdApplications(): () => Promise<void> {
    let open: () => void = () => {};
    this.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    this.openGate = open;
    const timer = setTimeout(open, HOLD_MS);
    timer.unref?.();
    return () => {
      clearTimeout(timer);
      open();
      return this.refresh();
    };
  }

  /**
   * Turns autolock on (with a new unlock key, returned) or off. This
   * manager's files follow once `applied` is called, after the answer.
   */
  async setEnabled(enabled: boolean, caller?: Caller): Promise<Change<UnlockKeyView | undefined>> {
    const { store, random, logger, audit } = this.deps;
    const action = enabled ? 'autolock.enable' : 'autolock.disable';
    const applied = this.holdApplications();
    let record: AutolockRecord | undefined;
    try {
      await transact(store, async (tx) => {
        const current = await tx.get(KEYS.autolock);
        record = current;
        if ((current?.enabled === true) === enabled) return; // already so: the key stays
        record = await this.recordFor(tx, enabled ? generateUnlockKey(random) : undefined);
        tx.put(KEYS.autolock, record);
      });
      failpoint('autolock:committed');
    } catch (error) {
      audit.record({ action, caller, result: error });
      await applied();
      throw error;
    }
    this.record = record;
    audit.record({ action, caller, result: 'ok' });
    logger.info({ ...who(caller) }, enabled ? 'autolock turned on: managers start locked' : 'autolock turned off');
    const desired = this.desired(record);
    const key = desired.enabled ? desired.unlockKey : undefined;
    return { result: key === undefined ? undefined : { unlockKey: formatUnlockKey(key), keyId: unlockKeyId(key) }, applied };
  }

  /** Replaces the unlock key; the previous one keeps opening managers that were down (see LocalLock). */
  async rotate(caller?: Caller): Promise<Change<UnlockKeyView>> {
    const { store, random, logger, audit, local } = this.deps;
    const next = generateUnlockKey(random);
    const applied = this.holdApplications();
    try {
      const entry = await store.get(KEYS.autolock);
      if (entry?.value.enabled !== true) throw new MusterError('AUTOLOCK_OFF');
      await local?.prepareRotation(next);
      failpoint('unlock-key-rotate:wrapped');
      await transact(store, async (tx) => {
        const current = await tx.get(KEYS.autolock);
        if (current?.enabled !== true) throw new MusterError('AUTOLOCK_OFF');
        tx.put(KEYS.autolock, await this.recordFor(tx, next));
      });
      failpoint('unlock-key-rotate:committed');
    } catch (error) {
      audit.record({ action: 'unlock-key.rotate', caller, result: error });
      await applied().catch(() => undefined); // a failed commit: back to the key the store holds
      throw error;
    }
    audit.record({ action: 'unlock-key.rotate', caller, result: 'ok' });
    logger.info({ keyId: unlockKeyId(next), ...who(caller) }, 'unlock key rotated');
    return { result: { unlockKey: formatUnlockKey(next), keyId: unlockKeyId(next) }, applied };
  }
}
