/**
 * Node sessions (issue 20): an agent holds one kept-alive connection and
 * long-polls `GET /v1/nodes/self?wait=N` on it; the manager answers at once
 * when there is something for the node to do, and otherwise parks the
 * request here until something that may concern the node happens, or the
 * wait runs out (the answer is then the heartbeat's). What wakes a parked
 * request, from the store's change feed and the member list:
 * - a change of the node's own record that matters to it (role, removal);
 * - a change of the cluster settings, the CA record or the CRL (every node);
 * - a change in the list of serving managers (every node; checked each second).
 * The route then answers if the node's answer changed, and parks again if not.
 * Nothing here writes to the store: a parked request costs a timer and a set entry.
 */
import type { Clock, TimerHandle } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { CLUSTER_WIDE_RENEW_REASONS } from '../../api/routes.js';
import { MAX_RENEW_SPREAD_MS, type SelfResponse } from '../../api/schemas.js';
import { formatDuration } from '../../core/duration.js';
import { KEYS, META_PREFIX, type ClusterStore } from '../../store/cluster-store.js';
import type { CrlRecord, NodeRecord } from '../../store/records.js';
import type { Membership } from '../state/membership.js';

/**
 * Renewals the whole cluster is asked for at once are spread over at least
 * this much time per node in session here: 100 renewals a second, well
 * under what one manager signs (bench:join), so they end within the window
 * (bench:idle: 10,000 nodes told at once, all renewed within the window).
 */
export const SPREAD_PER_NODE_MS = 10;
/** The agents' own window (two heartbeats, at most a minute) suffices below this. */
const MIN_ASKED_SPREAD_MS = 60_000;

/** How often the member list is compared for a change. */
const MEMBERS_CHECK_MS = 1_000;

/** The meta records whose change may concern every node (the CRL's only when the list itself changed: see crlChanged). */
const WAKE_ALL_KEYS: ReadonlySet<string> = new Set([KEYS.cluster.key, KEYS.ca.key]);

interface Parked {
  nodeId: string;
  /** What the node's record said when the request parked: a change of these wakes it. */
  role: NodeRecord['role'];
  wake: () => void;
}

/** Parked long-polls, by node. */
export class Sessions {
  private readonly byNode = new Map<string, Set<Parked>>();
  private unwatch: (() => void)[] = [];
  private membersTimer: TimerHandle | undefined;
  private lastMembers = '';
  private crlChangedAt: number | undefined;
  private stopped = false;
  /** Requests parked now. */
  private count = 0;
  /** How many were woken together the last time everyone was. */
  private wokenTogether = 0;

  constructor(private readonly deps: { store: ClusterStore; clock: Clock; logger: Logger; membership: Membership }) {}

  /** Follows the change feed and the member list. */
  start(): void {
    const { store } = this.deps;
    this.unwatch.push(
      store.watch(KEYS.nodes.prefix, (event) => {
        if (event.type === 'resync') return this.wakeAll();
        for (const change of event.changes) this.nodeChanged(change.key.slice(KEYS.nodes.prefix.length), change.value as NodeRecord | undefined);
      }),
      store.watch(META_PREFIX, (event) => {
        if (event.type === 'resync') return this.wakeAll();
        const crl = event.changes.map((change) => this.crlChanged(change)).some(Boolean); // every change seen, so the CRL's is remembered
        if (crl || event.changes.some((change) => WAKE_ALL_KEYS.has(change.key))) this.wakeAll();
      }),
    );
    void store
      .get(KEYS.crl)
      .then((entry) => {
        this.crlChangedAt ??= entry?.value.changedAt;
      })
      .catch(() => undefined);
    void this.checkMembers();
  }

  /** Wakes every parked request and stops following. Idempotent. */
  stop(): void {
    this.stopped = true;
    for (const unwatch of this.unwatch) unwatch();
    this.unwatch = [];
    this.membersTimer?.cancel();
    this.wakeAll();
  }

  /** Parked requests now. */
  get parked(): number {
    return this.count;
  }

  /**
   * The window over which this manager asks its nodes to spread a renewal
   * asked of them all, from the number in session here (those woken
   * together, or parked now); undefined while the agents' own window does.
   */
  renewSpreadMs(): number | undefined {
    const ms = Math.max(this.count, this.wokenTogether) * SPREAD_PER_NODE_MS;
    return ms <= MIN_ASKED_SPREAD_MS ? undefined : Math.min(ms, MAX_RENEW_SPREAD_MS);
  }

  /**
   * A node's answer to GET /v1/nodes/self (the session decision): `first` at
   * once when there is no wait or it must renew now, else held until
   * something it acts on changes (see {@link actionable}) or `waitMs` passed;
   * with the spread window a busy manager asks for when every node is told
   * to renew.
   */
  async selfAnswer(first: SelfResponse, waitMs: number, fresh: () => Promise<SelfResponse>): Promise<SelfResponse> {
    const answer = waitMs === 0 || first.renewNow ? first : await this.hold(first.node, waitMs, first, fresh, actionable);
    const spreadMs = answer.reason !== undefined && CLUSTER_WIDE_RENEW_REASONS.has(answer.reason) ? this.renewSpreadMs() : undefined;
    return spreadMs === undefined ? answer : { ...answer, renewSpread: formatDuration(spreadMs) };
  }

  /**
   * A long poll: `first` is the answer as of now; until `ms` have passed,
   * parks, and on each wake computes the answer again, returning it as soon
   * as `changed(first, answer)`. At the deadline (or when the manager stops)
   * returns `first`: nothing that would change it has happened (else the
   * poll would have been woken), so it is not computed again.
   */
  async hold<T>(node: Pick<NodeRecord, 'id' | 'role'>, ms: number, first: T, answer: () => Promise<T>, changed: (before: T, now: T) => boolean): Promise<T> {
    const deadline = this.deps.clock.now() + ms;
    for (;;) {
      const left = deadline - this.deps.clock.now();
      if (!(await this.park(node, left))) return first;
      const now = await answer();
      if (changed(first, now) || this.stopped) return now;
    }
  }

  /** Waits until something may concern the node, or `ms` passed, or the manager stops; resolves true when woken. */
  park(node: Pick<NodeRecord, 'id' | 'role'>, ms: number): Promise<boolean> {
    if (this.stopped || ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      let timer: TimerHandle | undefined;
      const parked: Parked = {
        nodeId: node.id,
        role: node.role,
        wake: () => {
          this.unpark(parked);
          timer?.cancel();
          resolve(true);
        },
      };
      timer = this.deps.clock.setTimer(ms, () => {
        this.unpark(parked);
        resolve(false);
      });
      let set = this.byNode.get(node.id);
      if (set === undefined) {
        set = new Set();
        this.byNode.set(node.id, set);
      }
      set.add(parked);
      this.count += 1;
    });
  }

  private unpark(parked: Parked): void {
    const set = this.byNode.get(parked.nodeId);
    if (set === undefined || !set.delete(parked)) return;
    this.count -= 1;
    if (set.size === 0) this.byNode.delete(parked.nodeId);
  }

  /**
   * A new CRL number wakes every node only when the list changed (a
   * revocation); the hourly re-signing does not (nodes fetch a fresh one
   * every 30 minutes anyway), so 10,000 nodes do not fetch it at once.
   */
  private crlChanged(change: { key: string; value: unknown }): boolean {
    if (change.key !== KEYS.crl.key) return false;
    const changedAt = (change.value as CrlRecord | undefined)?.changedAt;
    const changed = changedAt !== this.crlChangedAt;
    this.crlChangedAt = changedAt;
    return changed;
  }

  private nodeChanged(id: string, record: NodeRecord | undefined): void {
    const set = this.byNode.get(id);
    if (set === undefined) return;
    // Last-seen batches rewrite records all the time: only a change the node must act on wakes it.
    for (const parked of [...set]) if (record === undefined || record.removed || record.role !== parked.role) parked.wake();
  }

  private wakeAll(): void {
    this.wokenTogether = this.count;
    for (const set of [...this.byNode.values()]) for (const parked of [...set]) parked.wake();
  }

  private async checkMembers(): Promise<void> {
    if (this.stopped) return;
    try {
      const now = (await this.deps.membership.addresses()).slice().sort().join(',');
      if (this.lastMembers !== '' && now !== this.lastMembers) this.wakeAll();
      this.lastMembers = now;
    } catch (error) {
      this.deps.logger.debug({ code: (error as { code?: string }).code }, 'sessions: cannot read the member list');
    }
    if (!this.stopped) this.membersTimer = this.deps.clock.setTimer(MEMBERS_CHECK_MS, () => void this.checkMembers());
  }
}

/** Whether a node's answer changed in what it acts on: renew, its role or standing, the managers, the trust bundle, the CRL, the expiry. */
export function actionable(before: SelfResponse, now: SelfResponse): boolean {
  return (
    now.renewNow ||
    now.node.role !== before.node.role ||
    now.node.status !== before.node.status ||
    now.managers.join(',') !== before.managers.join(',') ||
    now.rootCA !== before.rootCA ||
    now.crlNumber !== before.crlNumber ||
    now.certExpiry !== before.certExpiry
  );
}
