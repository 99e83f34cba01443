/**
 * When nodes were last heard from, without a durable write per heartbeat:
 * a poll marks the node in memory, and the marks are written in batches
 * every few seconds, a hundred nodes to a transaction (one fsync for the
 * lot on the embedded store, one etcd Txn). Each write compares the version
 * it read, so a removal, a renewal or another manager's batch in between
 * is never overwritten: the batch is read again and sent once more, then
 * (still refused) a node at a time.
 *
 * A node whose stored time is recent (newer than `refreshMs`, a fraction
 * of the down-after window) is not written again at every heartbeat: with
 * sessions a node polls twice a minute, and its record is rewritten about
 * once per `refreshMs` instead.
 *
 * Nothing else loses durability. A last-seen time is advisory (the `ready`
 * or `down` status, and whom a root rotation waits for); a manager that
 * dies loses at most one flush interval of marks, and the node's next poll
 * marks it again. This manager's own views merge its marks in at once.
 */
import type { Clock, TimerHandle } from '../../core/clock.js';
import { isMusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { KEYS, Tx, type ClusterStore } from '../../store/cluster-store.js';
import type { NodeRecord } from '../../store/records.js';

/** Marks written per transaction (etcd allows 128 operations; each mark is a compare and a put). */
const MARKS_PER_TXN = 60;
/** The longest time between flushes. */
export const LAST_SEEN_FLUSH_MS = 5_000;

/** Last-seen marks held in memory and written in batches. */
export class LastSeen {
  /** Heard-from times this manager has not written (or chose not to): merged into its views. */
  private readonly marks = new Map<string, number>();
  /** Nodes whose mark is due to be written. */
  private readonly due = new Set<string>();
  private timer: TimerHandle | undefined;
  private flushing: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly deps: { store: ClusterStore; clock: Clock; logger: Logger; flushMs: number; refreshMs?: number }) {}

  /** Notes that node `id` was heard from now; `storedAt` is the time its record holds (written only when older than refreshMs). */
  mark(id: string, storedAt = 0): void {
    const now = this.deps.clock.now();
    this.marks.set(id, now);
    if (now - storedAt < (this.deps.refreshMs ?? 0)) return;
    this.due.add(id);
    this.arm();
  }

  /** The node with this manager's unwritten mark merged in. */
  merged(node: NodeRecord): NodeRecord {
    const mark = this.marks.get(node.id);
    return mark !== undefined && mark > node.lastSeenAt ? { ...node, lastSeenAt: mark } : node;
  }

  /** Marks due to be written (for tests and metrics). */
  get pending(): number {
    return this.due.size;
  }

  /** Writes every mark now. */
  async flush(): Promise<void> {
    await this.flushing;
    this.flushing = this.writeAll().finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
  }

  /** Writes what is left and stops the timer. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.flush().catch((error: unknown) =>
      this.deps.logger.warn({ code: isMusterError(error) ? error.code : 'INTERNAL' }, 'the last-seen times could not be written at stop'),
    );
  }

  private arm(): void {
    if (this.stopped || this.timer !== undefined) return;
    this.timer = this.deps.clock.setTimer(this.deps.flushMs, () => {
      this.timer = undefined;
      void this.flush().catch((error: unknown) => {
        this.deps.logger.warn({ code: isMusterError(error) ? error.code : 'INTERNAL' }, 'the last-seen times could not be written; trying again');
        this.arm();
      });
    });
  }

  private async writeAll(): Promise<void> {
    const batch = [...this.due].map((id): [string, number] => [id, this.marks.get(id) ?? 0]);
    for (let i = 0; i < batch.length; i += MARKS_PER_TXN) {
      const slice = batch.slice(i, i + MARKS_PER_TXN);
      // A batch that met a record changed meanwhile (a renewal, another manager's batch) is read and sent again once, then a mark at a time.
      if ((await this.write(slice)) || (await this.write(slice))) this.clear(slice);
      else for (const mark of slice) if (await this.write([mark])) this.clear([mark]);
    }
  }

  /** Drops written marks; a mark newer than the one written stays for the next flush. */
  private clear(written: readonly [string, number][]): void {
    for (const [id, at] of written) {
      if (this.marks.get(id) !== at) continue;
      this.marks.delete(id);
      this.due.delete(id);
    }
  }

  /** Writes `marks` in one transaction that compares every record read; false when one changed meanwhile. */
  private async write(marks: readonly [string, number][]): Promise<boolean> {
    const { store } = this.deps;
    const tx = new Tx(store);
    let puts = 0;
    for (const [id, at] of marks) {
      const ref = KEYS.nodes.ref(id);
      const node = await tx.get(ref);
      if (node === undefined || node.removed || node.lastSeenAt >= at) continue;
      tx.put(ref, { ...node, lastSeenAt: at });
      puts += 1;
    }
    if (puts === 0) return true;
    return store.commit(tx.toTxn());
  }
}
