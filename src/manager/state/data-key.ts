/**
 * The cluster data key a manager holds, and re-keying (DESIGN §10). The
 * store keeps the current key once per serving manager in `meta/datakey`,
 * each copy wrapped to that manager's certificate key (pki/key-wrap.ts). A
 * re-key (a manager demoted, removed or gone, a root rotation) makes a fresh
 * key and, in one transaction, re-seals every sealed value under it and
 * writes wraps only for the managers that stay: a removed manager's copy of
 * the old key opens nothing the store holds from then on.
 *
 * Each manager follows the record through the change feed: a key it does not
 * hold yet it unwraps with its own private key, then its files follow
 * (`onChange`). Every transaction that seals a value reads the record
 * (`keyFor`), so nothing sealed under a key a re-key replaced can commit
 * after it.
 */
import { X509Certificate, createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { MusterError, isMusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { spkiDer } from '../../pki/keys.js';
import { unwrapKey, wrapKey } from '../../pki/key-wrap.js';
import { generateDataKey, seal, unseal } from '../../pki/seal.js';
import { KEYS, META_PREFIX, decodeRecord, transact, type ClusterStore, type Tx } from '../../store/cluster-store.js';
import {
  SCHEMA_VERSION,
  type AutolockRecord,
  type CaRecord,
  type DataKeyRecord,
  type ExternalCaRecord,
  type Sealed,
  type TokensRecord,
} from '../../store/records.js';
import { SEAL_CONTEXT } from './signer.js';
import { openToken, storeToken } from './stored-tokens.js';

/** A data key's public ID: the first 16 hex digits of its SHA-256. */
export function dataKeyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

/** What a wrap is bound to: the record and the manager it is for, so a wrap cannot be moved to another. */
function wrapContext(nodeId: string): string {
  return `${KEYS.dataKey.key} ${nodeId}`;
}

/** The SPKI (DER, base64) of a certificate's key: what a manager's wrap is made to. */
export function certificateKey(certPem: string): string {
  return spkiDer(new X509Certificate(certPem).publicKey).toString('base64');
}

function wrapTo(key: Buffer, nodeId: string, spki: string): DataKeyRecord['wraps'][string] {
  return wrapKey(key, createPublicKey({ key: Buffer.from(spki, 'base64'), format: 'der', type: 'spki' }), wrapContext(nodeId));
}

/** The record of `key` wrapped for one manager (founding, or the first manager of a cluster from before re-keying). */
export function dataKeyRecord(key: Buffer, holder: { nodeId: string; certPem: string } | undefined, now: number): DataKeyRecord {
  const record: DataKeyRecord = { schema: SCHEMA_VERSION, keyId: dataKeyId(key), generation: 1, changedAt: now, wraps: {}, publicKeys: {} };
  return holder === undefined ? record : withWrap(record, key, holder.nodeId, certificateKey(holder.certPem));
}

function withWrap(record: DataKeyRecord, key: Buffer, nodeId: string, spki: string): DataKeyRecord {
  return { ...record, wraps: { ...record.wraps, [nodeId]: wrapTo(key, nodeId, spki) }, publicKeys: { ...record.publicKeys, [nodeId]: spki } };
}

/** What a manager's ring is built from. */
export interface DataKeyRingDeps {
  store: ClusterStore;
  nodeId: string;
  clock: Clock;
  logger: Logger;
  /** This manager's TLS identity now: its key opens its wrap, its certificate's key is what the wrap is made to. Absent: no wrap of its own (tests). */
  identity?: () => { keyPem: string; certPem: string } | undefined;
  /** Told of each key this manager switched to, one after another: its files (data.key, and what autolock seals under it) follow. */
  onChange?: (key: Buffer) => Promise<void>;
}

/** A re-key made in a transaction, to adopt once it committed. */
export interface Rekeyed {
  key: Buffer;
  record: DataKeyRecord;
  /** Managers that stay but got no wrap: the record held no key of theirs (they wrap their own when they start). */
  unwrapped: string[];
}

/** The data key a running manager holds; it changes under the manager when the cluster re-keys. */
export class DataKeyRing {
  private keyNow: Buffer;
  private idNow: string;
  private generationNow = 0;
  /** The keys before the current one (newest first): a record re-sealed under one of them may still be in a cache. */
  private older: Buffer[] = [];
  /** A record this manager could not open yet (its wrap is to a certificate it is about to serve). */
  private pending: DataKeyRecord | undefined;
  private unwatch: (() => void) | undefined;
  private changes: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: DataKeyRingDeps,
    key: Buffer,
  ) {
    this.keyNow = key;
    this.idNow = dataKeyId(key);
  }

  /** The key to seal and open with now. */
  current(): Buffer {
    return this.keyNow;
  }

  /** The current key's public ID. */
  get keyId(): string {
    return this.idNow;
  }

  /** Runs `fn` with the current key, then with the ones before it: a cached record may have been sealed before or after a re-key this manager has just followed. */
  withKey<T>(fn: (key: Buffer) => T): T {
    let first: unknown;
    for (const key of [this.keyNow, ...this.older]) {
      try {
        return fn(key);
      } catch (error) {
        first ??= error;
      }
    }
    throw first;
  }

  /**
   * Follows the store's record (watching before it reads: the feed must reach
   * this ring before the cluster state, which opens the re-sealed records), and
   * writes this manager's wrap when the store has none yet (a cluster from
   * before re-keying) or has one made to another key.
   */
  async start(): Promise<void> {
    const { store, logger } = this.deps;
    this.unwatch = store.watch(META_PREFIX, (event) => {
      if (event.type === 'resync') {
        void this.sync().catch((error: unknown) =>
          logger.warn({ code: isMusterError(error) ? error.code : 'INTERNAL' }, 'data key: cannot read the store record'),
        );
        return;
      }
      for (const change of event.changes) {
        if (change.key !== KEYS.dataKey.key || change.value === undefined) continue;
        try {
          this.follow(decodeRecord(KEYS.dataKey.schema, change.key, change.value));
        } catch (error) {
          logger.error({ code: isMusterError(error) ? error.code : 'INTERNAL' }, 'ignoring a data key record that does not match its schema');
        }
      }
    });
    await this.sync();
  }

  /** Stops following, and waits for this manager's files to have followed the last change. Idempotent. */
  async stop(): Promise<void> {
    this.unwatch?.();
    this.unwatch = undefined;
    await this.changes;
  }

  /** Reads the record, follows it, and writes this manager's own wrap where it is missing. */
  async sync(): Promise<void> {
    const { store, nodeId, clock } = this.deps;
    const own = this.deps.identity?.();
    await transact(store, async (tx) => {
      const record = await tx.get(KEYS.dataKey);
      if (record === undefined) {
        tx.put(KEYS.dataKey, dataKeyRecord(this.keyNow, own === undefined ? undefined : { nodeId, certPem: own.certPem }, clock.now()));
        return;
      }
      const key = this.keyOf(record);
      if (own === undefined) return;
      const spki = certificateKey(own.certPem);
      if (record.publicKeys[nodeId] === spki) return;
      // Only a serving manager gets a wrap: a demoted one that starts again must not give itself one.
      const node = await tx.get(KEYS.nodes.ref(nodeId));
      if (node?.role !== 'manager' || node.removed) return;
      tx.put(KEYS.dataKey, withWrap(record, key, nodeId, spki));
    });
  }

  /** Follows a record: the key it names, unwrapped with this manager's key when it is new. False when it cannot (yet). */
  follow(record: DataKeyRecord): boolean {
    if (record.keyId === this.idNow) {
      this.generationNow = Math.max(this.generationNow, record.generation);
      if (this.pending !== undefined && this.pending.generation <= record.generation) this.pending = undefined;
      return true;
    }
    if (record.generation < this.generationNow) return true; // older than the key held
    const key = this.unwrapOwn(record);
    if (key === undefined) {
      this.pending = record;
      return false;
    }
    this.pending = undefined;
    this.adopt({ key, record, unwrapped: [] });
    return true;
  }

  /** After this manager's certificate changed: a re-key wrapped to the new certificate opens now. */
  retry(): void {
    if (this.pending !== undefined) this.follow(this.pending);
  }

  /** Switches to a key (a re-key this manager made and committed, or one it unwrapped); its files follow. */
  adopt(rekeyed: Rekeyed): void {
    const { logger } = this.deps;
    if (rekeyed.record.generation < this.generationNow) return;
    this.generationNow = rekeyed.record.generation;
    if (dataKeyId(rekeyed.key) === this.idNow) return;
    this.older = [this.keyNow, ...this.older].slice(0, 2);
    this.keyNow = rekeyed.key;
    this.idNow = dataKeyId(rekeyed.key);
    logger.info({ keyId: this.idNow, generation: rekeyed.record.generation }, 'this manager holds the new cluster data key');
    const onChange = this.deps.onChange;
    if (onChange === undefined) return;
    const key = rekeyed.key;
    this.changes = this.changes
      .then(() => onChange(key))
      .catch((error: unknown) =>
        logger.error({ code: isMusterError(error) ? error.code : 'INTERNAL' }, "this manager's files could not follow the new data key"),
      );
  }

  /** Resolves once this manager's files have followed every key adopted so far. */
  settled(): Promise<void> {
    return this.changes;
  }

  /**
   * The key to seal with in `tx`: the one the store's record names (followed
   * first when it is new here). The commit requires that record unchanged:
   * nothing sealed under a key a re-key replaced can commit after the re-key.
   */
  async keyFor(tx: Tx): Promise<Buffer> {
    const record = await tx.get(KEYS.dataKey);
    return record === undefined ? this.keyNow : this.keyOf(record);
  }

  /** The key a record names; DATA_KEY_UNAVAILABLE when this manager has no copy it can open. */
  keyOf(record: DataKeyRecord): Buffer {
    if (record.keyId !== this.idNow) this.follow(record);
    if (record.keyId !== this.idNow) throw new MusterError('DATA_KEY_UNAVAILABLE');
    return this.keyNow;
  }

  private unwrapOwn(record: DataKeyRecord): Buffer | undefined {
    const { nodeId, logger } = this.deps;
    const wrap = record.wraps[nodeId];
    const own = this.deps.identity?.();
    if (wrap === undefined || own === undefined) {
      logger.warn(
        { keyId: record.keyId, generation: record.generation },
        'the cluster re-keyed, and the store holds no copy of the new data key for this manager',
      );
      return undefined;
    }
    try {
      const key = unwrapKey(wrap, createPrivateKey(own.keyPem), wrapContext(nodeId));
      if (dataKeyId(key) !== record.keyId) throw new MusterError('STATE_CORRUPT', 'the unwrapped data key is not the one the record names');
      return key;
    } catch (error) {
      logger.warn(
        { keyId: record.keyId, code: isMusterError(error) ? error.code : 'INTERNAL' },
        "this manager's copy of the new data key does not open with its key (yet)",
      );
      return undefined;
    }
  }
}

/** In the transaction that admits or renews a manager: its copy of the current data key, wrapped to the certificate it gets. */
export async function grantDataKey(tx: Tx, ring: DataKeyRing, nodeId: string, certPem: string): Promise<void> {
  const record = await tx.get(KEYS.dataKey);
  if (record === undefined) return; // a store from before re-keying: each manager writes its own wrap when it starts
  tx.put(KEYS.dataKey, withWrap(record, ring.keyOf(record), nodeId, certificateKey(certPem)));
}

type Reseal = (sealed: Sealed, context: string) => Sealed;

function resealExternal(list: ExternalCaRecord[] | undefined, reseal: Reseal): ExternalCaRecord[] | undefined {
  return list?.map((external) => (external.authKey === undefined ? external : { ...external, authKey: reseal(external.authKey, SEAL_CONTEXT.authKey) }));
}

/** Every sealed value of the CA record: the root key, the rotation's, the replaced roots', the admin CA's, the external CAs' auth keys. */
function resealCa(ca: CaRecord, reseal: Reseal): CaRecord {
  const key = (sealed: Sealed | undefined): { key?: Sealed } => (sealed === undefined ? {} : { key: reseal(sealed, SEAL_CONTEXT.caKey) });
  const external = (list: ExternalCaRecord[] | undefined): { external?: ExternalCaRecord[] } =>
    list === undefined ? {} : { external: resealExternal(list, reseal)! };
  const { key: _key, external: _external, rotation, previous, admin, ...rest } = ca;
  return {
    ...rest,
    ...(admin === undefined ? {} : { admin: { ...admin, key: reseal(admin.key, SEAL_CONTEXT.adminKey) } }),
    ...key(ca.key),
    ...external(ca.external),
    ...(rotation === undefined ? {} : { rotation: (({ key: sealed, external: list, ...r }) => ({ ...r, ...key(sealed), ...external(list) }))(rotation) }),
    ...(previous === undefined ? {} : { previous: previous.map(({ key: sealed, ...p }) => ({ ...p, ...key(sealed) })) }),
  };
}

/**
 * Re-keys in `tx` (which may write other records too: a demotion, a root
 * rotation): a fresh key; every sealed value, as this transaction leaves
 * it, opened with the old key and sealed under the new one; and the record
 * with wraps for the managers that stay (the managers index, without
 * `leaving`). Adopt the result once the transaction committed.
 */
export async function rekeyIn(tx: Tx, ring: DataKeyRing, options: { now: number; leaving?: string }): Promise<Rekeyed> {
  const record = await tx.get(KEYS.dataKey);
  const old = record === undefined ? ring.current() : ring.keyOf(record);
  const key = generateDataKey();
  const reseal: Reseal = (sealed, context) => seal(key, unseal(old, sealed, context), context);
  // Each record as this transaction leaves it: what it wrote already, else the store's.
  const ca = tx.written(KEYS.ca) ?? (await tx.get(KEYS.ca));
  if (ca !== undefined) tx.put(KEYS.ca, resealCa(ca, reseal));
  const tokens = tx.written(KEYS.tokens) ?? (await tx.get(KEYS.tokens));
  if (tokens !== undefined) {
    const resealed: TokensRecord = {
      ...tokens,
      worker: storeToken(key, 'worker', openToken(old, 'worker', tokens.worker)),
      manager: storeToken(key, 'manager', openToken(old, 'manager', tokens.manager)),
    };
    tx.put(KEYS.tokens, resealed);
  }
  const autolock = tx.written(KEYS.autolock) ?? (await tx.get(KEYS.autolock));
  if (autolock?.unlockKey !== undefined) {
    const resealed: AutolockRecord = { ...autolock, unlockKey: reseal(autolock.unlockKey, KEYS.autolock.key) };
    tx.put(KEYS.autolock, resealed);
  }
  const index = tx.written(KEYS.managers) ?? (await tx.get(KEYS.managers));
  const next: DataKeyRecord = {
    schema: SCHEMA_VERSION,
    keyId: dataKeyId(key),
    generation: (record?.generation ?? 0) + 1,
    changedAt: options.now,
    wraps: {},
    publicKeys: {},
  };
  const unwrapped: string[] = [];
  for (const id of index?.ids ?? []) {
    if (id === options.leaving) continue;
    const spki = record?.publicKeys[id];
    if (spki === undefined) unwrapped.push(id);
    else {
      next.wraps[id] = wrapTo(key, id, spki);
      next.publicKeys[id] = spki;
    }
  }
  tx.put(KEYS.dataKey, next);
  return { key, record: next, unwrapped };
}

/** Re-keys the cluster in a transaction of its own (see {@link rekeyIn}), and adopts the new key. */
export async function rekey(params: { store: ClusterStore; ring: DataKeyRing; clock: Clock; logger: Logger; leaving?: string }): Promise<DataKeyRecord> {
  const { store, ring, clock } = params;
  const rekeyed = await transact(store, (tx) => rekeyIn(tx, ring, { now: clock.now(), ...(params.leaving === undefined ? {} : { leaving: params.leaving }) }));
  ring.adopt(rekeyed);
  noteRekey(params.logger, rekeyed, params.leaving);
  return rekeyed.record;
}

/** The log line of a committed re-key. */
export function noteRekey(logger: Logger, rekeyed: Rekeyed, leaving?: string): void {
  logger.info(
    {
      keyId: rekeyed.record.keyId,
      generation: rekeyed.record.generation,
      managers: Object.keys(rekeyed.record.wraps).length,
      ...(leaving === undefined ? {} : { leaving }),
    },
    'cluster data key replaced; every secret in the store is sealed under the new key',
  );
  if (rekeyed.unwrapped.length > 0)
    logger.warn(
      { managers: rekeyed.unwrapped },
      'managers with no known certificate key got no copy of the new data key; they cannot serve until they join again',
    );
}
