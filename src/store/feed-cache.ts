/**
 * The node records a manager on etcd keeps from its change feed, so that a
 * node's request (each one reads the node's record: a heartbeat every 30 s
 * from every node in session) is answered without an etcd round trip
 * through the raft leader.
 *
 * It never serves a version older than the feed has delivered: entries come
 * from the feed's events, from this manager's own commits (at their
 * revision) and from reads made while the feed was connected, and an entry
 * is only ever replaced by a newer version (mod revision), so a late read or
 * event cannot put an older one back. A compare that failed marks its key
 * unknown: the next read goes to etcd.
 *
 * It serves only while the feed is connected (a lost stream empties it) and
 * confirmed within TRUST_MS: a read through etcd's quorum (made again at a
 * lookup once the last is CONFIRM_MS old) found no record under the prefix
 * changed after the last revision the feed delivered, or the feed has since
 * delivered the newest one it found. A member cut off from the quorum keeps
 * its stream but gets no events and answers no quorum read, so a manager
 * there stops serving from the cache within TRUST_MS, and its reads fail
 * (STORE_UNAVAILABLE) as they did without it. A change made on another
 * manager is seen here when its event arrives (the feed's delay,
 * milliseconds); one made here, at once.
 */

/** A confirmation older than this is renewed at the next lookup. */
export const CONFIRM_MS = 1_000;
/** A confirmation older than this no longer lets the cache answer. */
export const TRUST_MS = 3_000;
/** Confirmations start at most this often (a busy store: writes land between a check's start and its answer). */
const CHECK_GAP_MS = 200;
/** Entries kept at most (a node record is about 1 KB: ~200 MB); past it the cache starts over: it only saves reads. */
const MAX_ENTRIES = 200_000;

/** A key's text (null: deleted) at a version, or undefined text: not known (read it). */
interface Entry {
  text: string | null | undefined;
  version: number;
}

/** The quorum check: the newest mod revision among the prefix's records changed after `after` (0: none). */
export type NewestAfter = (after: number) => Promise<number>;

export class FeedCache {
  private readonly entries = new Map<string, Entry>();
  private connected = false;
  /** Bumped when the feed is lost: a read begun before does not fill. */
  private generation = 0;
  /** The highest revision the feed has delivered (events arrive in revision order). */
  private seen = 0;
  private confirmedAt = Number.NEGATIVE_INFINITY;
  /** A check's answer waiting for the feed to deliver `revision`. */
  private pending: { revision: number; at: number; generation: number } | undefined;
  private checking = false;
  private checkedAt = Number.NEGATIVE_INFINITY;

  constructor(
    readonly prefix: string,
    private readonly newestAfter: NewestAfter,
    private readonly now: () => number = Date.now,
  ) {}

  /** The record's text (null: absent) when the cache may answer for `key`, else undefined (read it). */
  lookup(key: string): { text: string; version: number } | null | undefined {
    if (!this.connected) return undefined;
    const age = this.now() - this.confirmedAt;
    if (age >= CONFIRM_MS) this.confirm();
    if (age >= TRUST_MS) return undefined;
    const entry = this.entries.get(key);
    if (entry === undefined || entry.text === undefined) return undefined;
    return entry.text === null ? null : { text: entry.text, version: entry.version };
  }

  /** Whether the cache answers now (for tests and status). */
  get serving(): boolean {
    return this.connected && this.now() - this.confirmedAt < TRUST_MS;
  }

  /** The generation to hand back to {@link fill} after a read. */
  get mark(): number {
    return this.generation;
  }

  /** A read's result (made at generation `mark`): kept if the feed was connected throughout and it is not older than what is held. */
  fill(key: string, text: string, version: number, mark: number): void {
    if (!this.connected || mark !== this.generation) return;
    this.put(key, text, version);
  }

  /** A change this manager committed, or the feed delivered. */
  learn(key: string, text: string | null, version: number): void {
    if (this.connected) this.put(key, text, version);
  }

  /** The feed delivered every change up to `revision`. */
  delivered(revision: number): void {
    if (revision > this.seen) this.seen = revision;
    const pending = this.pending;
    if (pending !== undefined && pending.generation === this.generation && this.seen >= pending.revision) {
      this.pending = undefined;
      this.confirmedAt = Math.max(this.confirmedAt, pending.at);
    }
  }

  /** A commit comparing `key` failed: what is held for it may be old. */
  forget(key: string): void {
    const entry = this.entries.get(key);
    if (entry !== undefined) entry.text = undefined;
  }

  /** The feed is connected (again); a new one at `revision` (it delivers what comes after it). */
  feedConnected(revision?: number): void {
    this.connected = true;
    if (revision !== undefined) this.delivered(revision);
  }

  /** The feed is lost: nothing held can be trusted, and reads under way must not fill. */
  feedLost(): void {
    this.connected = false;
    this.generation += 1;
    this.entries.clear();
    this.pending = undefined;
    this.confirmedAt = Number.NEGATIVE_INFINITY;
  }

  private put(key: string, text: string | null, version: number): void {
    const held = this.entries.get(key);
    if (held !== undefined && held.version > version) return;
    if (held !== undefined && held.version === version && held.text !== undefined) return;
    if (held === undefined && this.entries.size >= MAX_ENTRIES) this.entries.clear();
    this.entries.set(key, { text, version });
  }

  /** Starts a quorum check unless one is under way or began moments ago. */
  private confirm(): void {
    const at = this.now();
    if (this.checking || at - this.checkedAt < CHECK_GAP_MS) return;
    this.checking = true;
    this.checkedAt = at;
    const generation = this.generation;
    const seen = this.seen;
    this.newestAfter(seen)
      .then((newest) => {
        if (generation !== this.generation) return;
        if (newest <= this.seen) this.confirmedAt = Math.max(this.confirmedAt, at);
        else this.pending = { revision: newest, at, generation };
      })
      .catch(() => undefined)
      .finally(() => {
        this.checking = false;
      });
  }
}
