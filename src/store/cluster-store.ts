/**
 * The cluster store (DESIGN §8, §10): the one truth every manager reads and
 * changes. Records live under keys (`meta/cluster`, `nodes/<id>`, …); each
 * read returns the record with its version (the store revision of its last
 * change), and every change is a transaction that commits only if the
 * versions it read are still current: compare-and-swap, as etcd's Txn does.
 * `transact` turns that into read-modify-write with retries. The change feed
 * lets managers keep caches that never serve what the store no longer holds.
 *
 * Backends: LevelDB (level-store.ts, one serving manager) and etcd
 * (etcd-store.ts, several).
 */
import type { Static, TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { MusterError } from '../core/errors.js';
import {
  AutolockRecord,
  CaRecord,
  DataKeyRecord,
  CertificateRecord,
  ClusterRecord,
  CrlRecord,
  type ManagerRegistration,
  ManagersRecord,
  NodeRecord,
  RevokedRecord,
  SCHEMA_VERSION,
  SanPolicyRecord,
  ScopedTokenRecord,
  TokensRecord,
} from './records.js';

/** A record and the store revision that last changed it. */
export interface Entry<T> {
  value: T;
  version: number;
}

/** One record's key and schema. */
export interface Ref<S extends TSchema> {
  readonly key: string;
  readonly schema: S;
}

/** A family of records under one prefix (nodes, certificates). */
export interface Space<S extends TSchema> {
  readonly prefix: string;
  readonly schema: S;
  ref(id: string): Ref<S>;
}

function ref<S extends TSchema>(key: string, schema: S): Ref<S> {
  return { key, schema };
}

function space<S extends TSchema>(prefix: string, schema: S): Space<S> {
  return { prefix, schema, ref: (id) => ref(`${prefix}${id}`, schema) };
}

/** The prefix of the cluster-wide records (settings, CA, tokens, managers index). */
export const META_PREFIX = 'meta/';

/** Every record the store holds, by key. */
export const KEYS = {
  cluster: ref('meta/cluster', ClusterRecord),
  ca: ref('meta/ca', CaRecord),
  tokens: ref('meta/tokens', TokensRecord),
  managers: ref('meta/managers', ManagersRecord),
  crl: ref('meta/crl', CrlRecord),
  autolock: ref('meta/autolock', AutolockRecord),
  dataKey: ref('meta/datakey', DataKeyRecord),
  sanPolicy: ref('meta/sanpolicy', SanPolicyRecord),
  nodes: space('nodes/', NodeRecord),
  certificates: space('certs/', CertificateRecord),
  scopedTokens: space('jointokens/', ScopedTokenRecord),
  revoked: space('revoked/', RevokedRecord),
} as const;

/** A raw change as the backend reports it: the new value, or undefined for a deletion. */
export interface Change {
  key: string;
  value: unknown;
  version: number;
}

/** What a change-feed listener hears: changes, or "resync" after the feed may have missed some (a reconnect). */
export type ChangeEvent = { type: 'changes'; changes: Change[] } | { type: 'resync' };

/** A transaction: it commits its writes only if every compared key still has that version (0: absent). */
export interface Txn {
  compares: { key: string; version: number }[];
  puts: { key: string; value: unknown }[];
  deletes: string[];
}

/** A live manager as the store sees it. */
export interface Member {
  registration: ManagerRegistration;
  /** The one manager that runs the cluster's singleton work (an etcd election). */
  leader: boolean;
}

/** Every record of a store as it was at one store revision (a backup's content): values exactly as stored. */
export interface StoreDump {
  /** The store revision the records were read at. */
  revision: number;
  /** Records in key order; never the backend's own bookkeeping (revision counter, live manager registrations). */
  records: { key: string; value: unknown }[];
}

/** What the managers need from a store backend. */
export interface ClusterStore {
  /** Where the store lives, for status output; never credentials. */
  readonly description: string;
  /** Idempotent; writes already accepted reach the store first. */
  close(): Promise<void>;
  get<S extends TSchema>(ref: Ref<S>): Promise<Entry<Static<S>> | undefined>;
  /** Records of a space in key order, after `after` (an ID), at most `limit`. */
  list<S extends TSchema>(space: Space<S>, page?: { after?: string; limit?: number }): Promise<(Entry<Static<S>> & { id: string })[]>;
  /** Commits `txn`; false when a compared version has changed (nothing was written). */
  commit(txn: Txn): Promise<boolean>;
  /** Subscribes to changes made by anyone to keys under `prefix`; returns the unsubscribe function. */
  watch(prefix: string, listener: (event: ChangeEvent) => void): () => void;
  /** Registers this manager as serving for as long as it lives (etcd: bound to a lease). */
  register(registration: ManagerRegistration): Promise<void>;
  /** Withdraws the registration (stops serving). */
  unregister(): Promise<void>;
  /** The managers serving now, the leader marked. */
  members(): Promise<Member[]>;
  /** Every record at one consistent point (a LevelDB snapshot, an etcd revision), however many pages it takes. */
  dump(): Promise<StoreDump>;
}

const validators = new Map<TSchema, ReturnType<typeof Compile>>();
function validatorFor(schema: TSchema): ReturnType<typeof Compile> {
  let validator = validators.get(schema);
  if (validator === undefined) {
    validator = Compile(schema);
    validators.set(schema, validator);
  }
  return validator;
}

/**
 * The records of a space in key order, one page (`limit` records) at a time,
 * starting after `after`: a scan holds one page however large the space.
 */
export async function* pages<S extends TSchema>(
  store: ClusterStore,
  space: Space<S>,
  page: { after?: string | undefined; limit: number },
): AsyncGenerator<(Entry<Static<S>> & { id: string })[]> {
  let after = page.after;
  for (;;) {
    const chunk = await store.list(space, { after, limit: page.limit });
    if (chunk.length > 0) yield chunk;
    if (chunk.length < page.limit) return;
    after = chunk.at(-1)!.id;
  }
}

/** Checks a stored value against its schema; STATE_CORRUPT (naming the key) when it does not match. */
export function decodeRecord<S extends TSchema>(schema: S, key: string, value: unknown): Static<S> {
  if (validatorFor(schema).Check(value)) return value as Static<S>;
  const version = (value as { schema?: unknown } | null)?.schema;
  if (typeof version === 'number' && version !== SCHEMA_VERSION) {
    throw new MusterError(
      'STATE_CORRUPT',
      `the store record ${key} was written by another version of muster (schema ${version}, this one reads ${SCHEMA_VERSION})`,
      {
        hint: 'run the muster version that wrote this cluster',
      },
    );
  }
  throw new MusterError('STATE_CORRUPT', `the store record ${key} does not match its schema`);
}

/** The read and write set of one attempt of {@link transact}. */
export class Tx {
  private readonly compares = new Map<string, number>();
  private readonly puts = new Map<string, unknown>();
  private readonly deletes = new Set<string>();

  constructor(private readonly store: ClusterStore) {}

  /** Reads a record from the store; the commit requires it unchanged. */
  async get<S extends TSchema>(ref: Ref<S>): Promise<Static<S> | undefined> {
    const entry = await this.store.get(ref);
    this.assume(ref, entry);
    return entry?.value;
  }

  /** Uses a record read earlier (a cache); the commit requires that version still current. */
  assume<S extends TSchema>(ref: Ref<S>, entry: Entry<Static<S>> | undefined): Static<S> | undefined {
    if (!this.compares.has(ref.key)) this.compares.set(ref.key, entry?.version ?? 0);
    return entry?.value;
  }

  /** Writes a record (validated against its schema first: a bad record is a bug, not a store failure). */
  put<S extends TSchema>(ref: Ref<S>, value: Static<S>): void {
    if (!validatorFor(ref.schema).Check(value)) throw new MusterError('INTERNAL', `refusing to write ${ref.key}: it does not match its schema`);
    this.deletes.delete(ref.key);
    this.puts.set(ref.key, value);
  }

  /** What this attempt wrote to a record so far (undefined: nothing, or a deletion). */
  written<S extends TSchema>(ref: Ref<S>): Static<S> | undefined {
    return this.puts.get(ref.key) as Static<S> | undefined;
  }

  /** Deletes a record. */
  delete(ref: Ref<TSchema>): void {
    this.puts.delete(ref.key);
    this.deletes.add(ref.key);
  }

  /** True when the attempt wrote nothing. */
  get readOnly(): boolean {
    return this.puts.size === 0 && this.deletes.size === 0;
  }

  /** The transaction to commit. */
  toTxn(): Txn {
    return {
      compares: [...this.compares].map(([key, version]) => ({ key, version })),
      puts: [...this.puts].map(([key, value]) => ({ key, value })),
      deletes: [...this.deletes],
    };
  }
}

/** Options for {@link transact}. */
export interface TransactOptions {
  /** Attempts before giving up with STORE_CONFLICT. */
  attempts?: number;
  /** Runs after a conflict, before the next attempt (refresh the caches `fn` assumed). */
  beforeRetry?: () => Promise<void>;
}

/**
 * Read-modify-write: runs `fn` against a fresh Tx and commits what it wrote
 * if nothing it read has changed since; otherwise runs it again. `fn` must
 * have no effects outside the Tx that a rerun would repeat harmfully.
 */
export async function transact<T>(store: ClusterStore, fn: (tx: Tx) => Promise<T>, options: TransactOptions = {}): Promise<T> {
  const attempts = options.attempts ?? 32;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const tx = new Tx(store);
    const result = await fn(tx);
    if (tx.readOnly || (await store.commit(tx.toTxn()))) return result;
    await options.beforeRetry?.();
  }
  throw new MusterError('STORE_CONFLICT');
}

/** Every record of a store (a copy's source), meta records last (their presence marks a complete copy). */
export async function readAllRecords(store: ClusterStore): Promise<{ key: string; value: unknown }[]> {
  const records: { key: string; value: unknown }[] = [];
  const spaces: Space<TSchema>[] = [KEYS.nodes, KEYS.certificates, KEYS.scopedTokens, KEYS.revoked];
  for (const space of spaces) {
    for (const entry of await store.list(space)) records.push({ key: space.ref(entry.id).key, value: entry.value });
  }
  const refs: Ref<TSchema>[] = [KEYS.ca, KEYS.tokens, KEYS.managers, KEYS.crl, KEYS.autolock, KEYS.dataKey, KEYS.cluster];
  for (const ref of refs) {
    const entry = await store.get(ref);
    if (entry !== undefined) records.push({ key: ref.key, value: entry.value });
  }
  return records;
}
