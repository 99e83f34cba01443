/**
 * Clearing out what the store no longer needs, as singleton work that only
 * the leader does. Every join adds a node record and every issuance a
 * certificate record, and nothing else deletes them: one worker token made
 * 66,000 nodes. The janitor deletes the record of a removed node once its
 * last certificate has expired and the renewal grace after it has passed,
 * certificate records that have expired and no longer matter: superseded
 * node certificates (not the node's current one, or of a removed or deleted
 * node) and API-user certificates, scoped join tokens a day after they
 * expired or were used up, and denylist entries of expired certificates.
 *
 * A sweep pages through the store in bounded chunks and deletes in
 * transactions that compare the versions it read, so a record that changed
 * meanwhile stays (the next sweep looks at it again).
 */
import type { Clock, TimerHandle } from '../../core/clock.js';
import { isMusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { KEYS, Tx, pages, type ClusterStore, type Entry, type Space } from '../../store/cluster-store.js';
import type { NodeRecord } from '../../store/records.js';
import type { Static, TSchema } from 'typebox';
import type { Membership } from '../state/membership.js';
import { ENDED_TOKEN_KEPT_MS, tokenEndedAt } from './scoped-tokens.js';

/** How often the leader sweeps unless told otherwise. */
export const SWEEP_EVERY_MS = 10 * 60_000;
/** Records read per store call. */
const CHUNK = 500;
/** Deletions per transaction: etcd refuses a Txn of more than 128 compares or operations, and each deletion is one of each. */
const DELETES_PER_TXN = 100;

/** A record as a page of the store lists it. */
type Listed<T> = Entry<T> & { id: string };

/** What one sweep deleted. */
export interface SweepCounts {
  nodes: number;
  certificates: number;
  /** Scoped join tokens that expired or were used up over a day ago. */
  tokens: number;
  /** Denylist entries of certificates that have expired. */
  revoked: number;
}

/** What the janitor works with. */
export interface JanitorDeps {
  store: ClusterStore;
  membership: Pick<Membership, 'isLeader'>;
  clock: Clock;
  logger: Logger;
  /** How long after expiry a certificate may still renew (the cluster's renewal grace): a removed node's record outlives its certificate by this, so a daemon coming back within it hears NODE_REMOVED. */
  renewGraceMs: () => number;
  /** Time between sweeps (default SWEEP_EVERY_MS). */
  everyMs?: number;
  /** Deletes denylist entries of expired certificates and moves the CRL on (revocations.ts); returns how many went. */
  pruneDenylist?: () => Promise<number>;
}

/** Sweeps expired records out of the store, on the leader, every few minutes of the injected clock. */
export class Janitor {
  private timer: TimerHandle | undefined;
  private sweeping: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly deps: JanitorDeps) {}

  /** Arms the first sweep, one interval from now. Idempotent. */
  start(): void {
    if (this.stopped || this.timer !== undefined || this.sweeping !== undefined) return;
    this.arm();
  }

  /** Cancels the next sweep and waits for one under way, which stops at its next chunk. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.sweeping;
  }

  /** Resolves once the sweep under way, if any, has finished (the timer starts sweeps without waiting for them). */
  async idle(): Promise<void> {
    await this.sweeping;
  }

  private arm(): void {
    this.timer = this.deps.clock.setTimer(this.deps.everyMs ?? SWEEP_EVERY_MS, () => {
      this.timer = undefined;
      this.sweeping = this.tick().finally(() => {
        this.sweeping = undefined;
        if (!this.stopped) this.arm();
      });
    });
  }

  private async tick(): Promise<void> {
    const { membership, logger } = this.deps;
    try {
      // Two sweeps at once would be safe (every deletion compares), but they would only repeat each other's work.
      if (!(await membership.isLeader())) return;
      const counts = await this.sweep();
      if (counts.nodes + counts.certificates + counts.tokens + counts.revoked > 0) logger.info({ ...counts }, 'swept expired records from the store');
    } catch (error) {
      logger.warn({ code: isMusterError(error) ? error.code : 'INTERNAL' }, 'the store sweep failed; the next one tries again');
    }
  }

  /** One sweep now, leader or not (the timer sweeps only on the leader). */
  async sweep(): Promise<SweepCounts> {
    const now = this.deps.clock.now();
    const nodes = await this.sweepSpace(KEYS.nodes, async (chunk) => chunk.filter((e) => this.purgeable(e.value, now)));
    const certificates = await this.sweepSpace(KEYS.certificates, async (chunk) => {
      const doomed: typeof chunk = [];
      const nodes = new Map<string, NodeRecord | undefined>();
      for (const entry of chunk) {
        const cert = entry.value;
        if (cert.notAfter >= now) continue; // kept while valid, revoked or not
        if (cert.role === 'admin') {
          doomed.push(entry);
          continue;
        }
        if (!nodes.has(cert.subject)) nodes.set(cert.subject, (await this.deps.store.get(KEYS.nodes.ref(cert.subject)))?.value);
        const node = nodes.get(cert.subject);
        // A node's current certificate stays with the node: it may still renew within the grace after expiry.
        // The other reasons never revert (a serial once superseded stays so, a removal is final), so the node is not compared.
        if (node === undefined || node.removed || node.certSerial !== cert.serial) doomed.push(entry);
      }
      return doomed;
    });
    const tokens = await this.sweepSpace(KEYS.scopedTokens, async (chunk) =>
      chunk.filter((e) => {
        const ended = tokenEndedAt(e.value, now);
        return ended !== undefined && ended + ENDED_TOKEN_KEPT_MS < now;
      }),
    );
    const revoked = this.deps.pruneDenylist === undefined ? 0 : await this.deps.pruneDenylist();
    return { nodes, certificates, tokens, revoked };
  }

  /** A removed node whose last certificate has expired longer than the renewal grace ago: nothing can present one for it any more. */
  private purgeable(node: NodeRecord, now: number): boolean {
    return node.removed && node.certNotAfter + this.deps.renewGraceMs() < now;
  }

  /** Pages through `space`, deleting what `select` picks from each chunk; returns how many it deleted. */
  private async sweepSpace<S extends TSchema>(space: Space<S>, select: (chunk: Listed<Static<S>>[]) => Promise<Listed<Static<S>>[]>): Promise<number> {
    let deleted = 0;
    for await (const chunk of pages(this.deps.store, space, { limit: CHUNK })) {
      if (this.stopped) break;
      const doomed = await select(chunk);
      for (let i = 0; i < doomed.length; i += DELETES_PER_TXN) deleted += await this.deleteAll(space, doomed.slice(i, i + DELETES_PER_TXN));
    }
    return deleted;
  }

  /** Deletes `entries` in one transaction; when one of them changed since it was read, one at a time, so only that one stays. */
  private async deleteAll<S extends TSchema>(space: Space<S>, entries: Listed<Static<S>>[]): Promise<number> {
    if (await this.commitDeletes(space, entries)) return entries.length;
    if (entries.length === 1) return 0;
    let deleted = 0;
    for (const entry of entries) if (await this.commitDeletes(space, [entry])) deleted += 1;
    return deleted;
  }

  private commitDeletes<S extends TSchema>(space: Space<S>, entries: Listed<Static<S>>[]): Promise<boolean> {
    const tx = new Tx(this.deps.store);
    for (const entry of entries) {
      const ref = space.ref(entry.id);
      tx.assume(ref, entry); // deleted only at the version that was judged
      tx.delete(ref);
    }
    return this.deps.store.commit(tx.toTxn());
  }
}
