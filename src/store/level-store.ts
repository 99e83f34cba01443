/**
 * The embedded store: the ClusterStore contract on LevelDB (an injected
 * abstract-level database: classic-level on disk, memory-level in tests).
 * One serving manager owns it, so the change feed is in-process.
 *
 * Each value is stored as `{r, v}`: the record and the store revision of its
 * last change, which is its version. A commit checks its compares against
 * the database, assigns the next revision and writes puts, deletes and the
 * revision counter in one fsync'd batch.
 *
 * Commits are grouped: a batch waits one turn of the event loop, so the
 * commits of every request read in that turn go together, and while one
 * batch is being fsync'd the commits that arrive queue for the next one
 * (bench:join: 2.6 joins per fsync instead of 1.4), each checked in order
 * against the state the earlier ones leave. Every caller resolves only once
 * its own writes are on disk. After a failed write (a full disk) the store
 * acknowledges nothing more until LevelDB has been reopened and read back:
 * LevelDB drops a torn log record on recovery together with everything
 * written after it, so acknowledging writes after a write error loses them.
 */
import { readdir, stat } from 'node:fs/promises';
import { ensurePrivateDir } from '../core/atomic-file.js';
import type { AbstractLevel } from 'abstract-level';
import { Level } from 'level';
import type { Static, TSchema } from 'typebox';
import { MusterError } from '../core/errors.js';
import { levelDamage } from './level-files.js';
import type { ManagerRegistration } from './records.js';
import {
  decodeRecord,
  type ChangeEvent,
  type ClusterStore,
  type Entry,
  type Member,
  type Ref,
  type Space,
  type Txn,
  type Change,
  type StoreDump,
} from './cluster-store.js';

/** The database a LevelStore runs on: string keys, JSON text values. */
export type LevelDatabase = AbstractLevel<string | Buffer | Uint8Array, string, string>;

interface Stored {
  r: number;
  v: unknown;
}

interface Pending {
  txn: Txn;
  resolve: (ok: boolean) => void;
  reject: (error: unknown) => void;
}

/** The revision counter's key (outside every record prefix). */
const REVISION_KEY = '~revision';
/** At most this many commits share one batch. */
const MAX_GROUP = 256;
/** Keys whose versions are kept at most (about 10 MB); past it the cache starts over: it only saves reads. */
const MAX_CACHED_VERSIONS = 100_000;
/** Records whose stored text is kept at most (a node record is about 1 KB: ~200 MB at most); past it the cache starts over. */
const MAX_CACHED_TEXTS = 200_000;
/** classic-level's `sync`: fsync the write-ahead log before the batch resolves. */
const SYNC = { sync: true };

const unavailable = (why: string, cause?: unknown): MusterError =>
  new MusterError('STORE_UNAVAILABLE', `the cluster store ${why}`, cause === undefined ? {} : { cause });

/** LevelDB's own files, read only: a store folder without CURRENT is not a store, and one with a damaged MANIFEST or table is refused before LevelDB writes to it. */
async function checkStoreFiles(dir: string): Promise<void> {
  const hint = 'restore the data dir from a backup, or move it aside and re-join this node; muster never re-creates a store in place';
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new MusterError('STATE_CORRUPT', `the cluster store ${dir} is missing`, { hint });
  }
  const files = await readdir(dir);
  if (!files.includes('CURRENT')) throw new MusterError('STATE_CORRUPT', `the cluster store ${dir} has no CURRENT file: it is damaged`, { hint });
  const damage = await levelDamage(dir); // a file it cannot read is the CLI's FILE_ACCESS (cli/output.ts)
  if (damage !== undefined) throw new MusterError('STATE_CORRUPT', `the cluster store ${dir} is damaged: ${damage}`, { hint });
}

/** The embedded LevelDB store. */
export class LevelStore implements ClusterStore {
  private readonly listeners = new Set<{ prefix: string; listener: (event: ChangeEvent) => void }>();
  private readonly queue: Pending[] = [];
  private draining: Promise<void> | undefined;
  private closed = false;
  /** Set after a failed write; cleared once the database was reopened and read back. */
  private failure: unknown;
  private recovering: Promise<void> | undefined;
  private revision = 0;
  /**
   * The version of every key a group commit has compared or written, as it
   * is now. Only the drain loop (one group at a time) reads or writes it, and
   * every write goes through that loop, so it is exact: the compares of a
   * commit need no database read for a key seen before. Emptied when the
   * database is reopened after a failed write.
   */
  private readonly versions = new Map<string, number>();
  /**
   * The stored text of records read or written (issue 31: the authorisation
   * of every request reads its node's record, and LevelDB's get was the
   * largest share of a manager's CPU at rest). Exact, as `versions` is: this
   * process is the store's one writer, and a write replaces a key's text
   * before its commit resolves. A read fills it only when no batch was
   * written while it read (`written` unchanged), so a read that raced a
   * write never leaves the older text behind. Parsed on every read: callers
   * get their own objects.
   */
  private readonly texts = new Map<string, string>();
  /** Batches written since the store opened: a read that saw it change does not fill `texts`. */
  private written = 0;
  private registration: ManagerRegistration | undefined;
  /** Batches written so far (each fsync'd); fewer than the commits when they were grouped. */
  batches = 0;

  private constructor(
    private readonly db: LevelDatabase,
    readonly description: string,
  ) {}

  /**
   * Opens the store in `dir`. With `create`, the folder must not hold a store
   * yet (init); without, it must hold one and it is never re-created: a
   * missing or damaged store is STATE_CORRUPT and nothing is touched.
   */
  static async openDir(dir: string, options: { create: boolean }): Promise<LevelStore> {
    if (!options.create) await checkStoreFiles(dir);
    else await ensurePrivateDir(dir); // 0700 before LevelDB writes into it, whatever the umask
    const db = new Level<string, string>(dir, { createIfMissing: options.create, errorIfExists: options.create }) as unknown as LevelDatabase;
    return LevelStore.open(db, `level ${dir}`);
  }

  /** Opens a store over any abstract-level database (memory-level in tests). */
  static async open(db: LevelDatabase, description: string): Promise<LevelStore> {
    try {
      await db.open();
    } catch (cause) {
      const text = String((cause as { cause?: unknown }).cause ?? cause);
      if (/lock/i.test(text)) throw new MusterError('STATE_CORRUPT', 'the cluster store is locked: is another muster running on this data dir?', { cause });
      throw new MusterError('STATE_CORRUPT', `the cluster store cannot be opened (${text.slice(0, 200)})`, { cause });
    }
    const store = new LevelStore(db, description);
    store.revision = await store.readRevision();
    return store;
  }

  private async readRevision(): Promise<number> {
    const text = await this.db.get(REVISION_KEY);
    if (text === undefined) return 0;
    const revision = Number(text);
    if (!Number.isSafeInteger(revision) || revision < 0) throw new MusterError('STATE_CORRUPT', 'the cluster store revision counter is damaged');
    return revision;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.draining; // commits already accepted reach the disk first
    await this.recovering?.catch(() => undefined);
    await this.db.close();
  }

  private parse(key: string, text: string): Stored {
    try {
      const stored = JSON.parse(text) as Stored;
      if (typeof stored?.r !== 'number') throw new Error('no revision');
      return stored;
    } catch (cause) {
      throw new MusterError('STATE_CORRUPT', `the store record ${key} cannot be read`, { cause });
    }
  }

  /** Reads a stored value; commits already accepted may still read while the store closes. */
  private async read(key: string, accepted = false): Promise<Stored | undefined> {
    if (this.closed && !accepted) throw unavailable('is closed');
    const cached = this.texts.get(key);
    if (cached !== undefined) return this.parse(key, cached);
    const writtenBefore = this.written;
    let text: string | undefined;
    try {
      text = await this.db.get(key);
    } catch (cause) {
      throw unavailable('cannot be read', cause);
    }
    if (text === undefined) return undefined;
    const stored = this.parse(key, text); // a damaged record is never cached
    if (this.written === writtenBefore && this.failure === undefined) this.remember(key, text);
    return stored;
  }

  private remember(key: string, text: string): void {
    if (this.texts.size >= MAX_CACHED_TEXTS && !this.texts.has(key)) this.texts.clear();
    this.texts.set(key, text);
  }

  async get<S extends TSchema>(ref: Ref<S>): Promise<Entry<Static<S>> | undefined> {
    const stored = await this.read(ref.key);
    return stored === undefined ? undefined : { value: decodeRecord(ref.schema, ref.key, stored.v), version: stored.r };
  }

  async list<S extends TSchema>(space: Space<S>, page: { after?: string; limit?: number } = {}): Promise<(Entry<Static<S>> & { id: string })[]> {
    if (this.closed) throw unavailable('is closed');
    const range = {
      ...(page.after === undefined ? { gte: space.prefix } : { gt: `${space.prefix}${page.after}` }),
      lt: `${space.prefix}\uffff`,
      ...(page.limit === undefined ? {} : { limit: page.limit }),
    };
    const out: (Entry<Static<S>> & { id: string })[] = [];
    try {
      for await (const [key, text] of this.db.iterator(range)) {
        const stored = this.parse(key, text);
        out.push({ id: key.slice(space.prefix.length), value: decodeRecord(space.schema, key, stored.v), version: stored.r });
      }
    } catch (error) {
      if (error instanceof MusterError) throw error;
      throw unavailable('cannot be read', error);
    }
    return out;
  }

  /** One iterator over the whole database: LevelDB iterators read from an implicit snapshot, so the records and the revision counter are of one point. */
  async dump(): Promise<StoreDump> {
    if (this.closed) throw unavailable('is closed');
    const records: StoreDump['records'] = [];
    let revision = 0;
    try {
      for await (const [key, text] of this.db.iterator()) {
        if (key === REVISION_KEY) {
          revision = Number(text);
          if (!Number.isSafeInteger(revision) || revision < 0) throw new MusterError('STATE_CORRUPT', 'the cluster store revision counter is damaged');
          continue;
        }
        records.push({ key, value: this.parse(key, text).v });
      }
    } catch (error) {
      if (error instanceof MusterError) throw error;
      throw unavailable('cannot be read', error);
    }
    return { revision, records };
  }

  commit(txn: Txn): Promise<boolean> {
    if (this.closed) return Promise.reject(unavailable('is closed'));
    if (this.failure !== undefined) return Promise.reject(this.failedError());
    return new Promise<boolean>((resolve, reject) => {
      this.queue.push({ txn, resolve, reject });
      this.draining ??= this.drain();
    });
  }

  private failedError(): MusterError {
    return unavailable('refuses writes until it has recovered from a failed write (is the disk full?); retry shortly', this.failure);
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      // One turn of the event loop first: the commits of every request read in the same turn join the group.
      await new Promise<void>((resolve) => setImmediate(resolve));
      const group = this.queue.splice(0, MAX_GROUP);
      if (this.failure !== undefined) {
        for (const pending of group) pending.reject(this.failedError());
        continue;
      }
      await this.commitGroup(group);
    }
    this.draining = undefined;
  }

  /** Checks each commit of the group in order, then writes the accepted ones in one batch. */
  private async commitGroup(group: Pending[]): Promise<void> {
    await this.loadVersions(group);
    const overlay = new Map<string, number>(); // key -> version after the earlier commits of this group (0: deleted)
    const operations: { type: 'put' | 'del'; key: string; value?: string }[] = [];
    const accepted: { pending: Pending; changes: Change[] }[] = [];
    let revision = this.revision;
    for (const pending of group) {
      let ops: typeof operations;
      let changes: Change[];
      try {
        if (!(await this.comparesHold(pending.txn, overlay))) {
          pending.resolve(false);
          continue;
        }
        // Encoded here, per commit: one commit's unencodable record fails that commit alone.
        ops = [];
        changes = [];
        for (const { key, value } of pending.txn.puts) {
          ops.push({ type: 'put', key, value: JSON.stringify({ r: revision + 1, v: value }) });
          changes.push({ key, value, version: revision + 1 });
        }
        for (const key of pending.txn.deletes) {
          ops.push({ type: 'del', key });
          changes.push({ key, value: undefined, version: revision + 1 });
        }
      } catch (error) {
        pending.reject(error);
        continue;
      }
      revision += 1;
      for (const change of changes) overlay.set(change.key, change.value === undefined ? 0 : revision);
      operations.push(...ops);
      accepted.push({ pending, changes });
    }
    if (accepted.length === 0) return;
    operations.push({ type: 'put', key: REVISION_KEY, value: String(revision) });
    try {
      this.batches += 1;
      await (this.db.batch as unknown as (ops: typeof operations, options: typeof SYNC) => Promise<void>)(operations, SYNC);
    } catch (cause) {
      this.failure = cause;
      this.written += 1; // the batch may be on disk in part: reads in flight fill nothing
      this.texts.clear();
      for (const { pending } of accepted) pending.reject(this.failedError());
      this.recovering ??= this.recover();
      return;
    }
    this.revision = revision;
    this.written += 1;
    for (const [key, version] of overlay) this.versions.set(key, version);
    for (const op of operations) {
      if (op.type === 'del') this.texts.delete(op.key);
      else if (op.key !== REVISION_KEY && op.value !== undefined) this.remember(op.key, op.value);
    }
    for (const { pending } of accepted) pending.resolve(true);
    this.emit({ type: 'changes', changes: accepted.flatMap((a) => a.changes) });
  }

  /** Reads, all at once, the versions of the group's compared keys that no earlier group saw. */
  private async loadVersions(group: Pending[]): Promise<void> {
    if (this.versions.size > MAX_CACHED_VERSIONS) this.versions.clear();
    const missing = new Set<string>();
    for (const { txn } of group) for (const { key } of txn.compares) if (!this.versions.has(key)) missing.add(key);
    await Promise.all(
      [...missing].map(async (key) => {
        try {
          this.versions.set(key, (await this.read(key, true))?.r ?? 0);
        } catch {
          // comparesHold reads it again and the commit fails with the read's error
        }
      }),
    );
  }

  private async comparesHold(txn: Txn, overlay: Map<string, number>): Promise<boolean> {
    for (const { key, version } of txn.compares) {
      const current = overlay.get(key) ?? this.versions.get(key) ?? (await this.read(key, true))?.r ?? 0;
      if (current !== version) return false;
    }
    return true;
  }

  /**
   * After a failed write: reopen LevelDB (its recovery replays the log and
   * drops a torn tail) and read the revision back, retrying until that works.
   * Writes are refused until then; nothing refused was acknowledged.
   */
  private async recover(): Promise<void> {
    for (let delay = 200; !this.closed; delay = Math.min(delay * 2, 5_000)) {
      try {
        await this.db.close();
        await this.db.open();
        this.versions.clear();
        this.texts.clear();
        this.revision = await this.readRevision();
        this.failure = undefined;
        this.emit({ type: 'resync' });
        break;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
      }
    }
    this.recovering = undefined;
  }

  watch(prefix: string, listener: (event: ChangeEvent) => void): () => void {
    const entry = { prefix, listener };
    this.listeners.add(entry);
    return () => this.listeners.delete(entry);
  }

  private emit(event: ChangeEvent): void {
    for (const { prefix, listener } of this.listeners) {
      if (event.type === 'resync') {
        listener(event);
        continue;
      }
      const changes = event.changes.filter((change) => change.key.startsWith(prefix));
      if (changes.length > 0) listener({ type: 'changes', changes });
    }
  }

  // One process serves an embedded store, so membership is this process alone.

  async register(registration: ManagerRegistration): Promise<void> {
    this.registration = registration;
  }

  async unregister(): Promise<void> {
    this.registration = undefined;
  }

  async members(): Promise<Member[]> {
    return this.registration === undefined ? [] : [{ registration: this.registration, leader: true }];
  }
}
