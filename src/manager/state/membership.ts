/**
 * The serving managers: this manager's registration in the store (held by a
 * lease on etcd, so it vanishes when the manager dies) and the list of the
 * others, with the leader that one etcd election picks. Nodes are told the
 * addresses; `node ls` shows each manager as Leader, Reachable or Unreachable.
 */
import type { Clock } from '../../core/clock.js';
import type { ClusterStore, Member } from '../../store/cluster-store.js';

/** How a manager looks from here, as `docker node ls` says it. */
export type ManagerStatus = 'Leader' | 'Reachable' | 'Unreachable';

/** How long a read of the member list is reused. */
const MEMBERS_TTL_MS = 1_000;

/** This manager's place among the serving managers. */
export class Membership {
  private cached: { at: number; members: Member[] } | undefined;
  private registered = false;

  constructor(
    private readonly deps: { store: ClusterStore; clock: Clock; nodeId: string; startedAt: number },
    private addr: string,
  ) {}

  /** The address nodes reach this manager on. */
  get address(): string {
    return this.addr;
  }

  /** Registers this manager as serving at `addr`. */
  async register(addr: string = this.addr): Promise<void> {
    this.addr = addr;
    await this.deps.store.register({ nodeId: this.deps.nodeId, addr, startedAt: this.deps.startedAt });
    this.registered = true;
    this.cached = undefined;
  }

  /** Withdraws the registration. Idempotent. */
  async unregister(): Promise<void> {
    if (!this.registered) return;
    this.registered = false;
    this.cached = undefined;
    await this.deps.store.unregister();
  }

  /** The serving managers (read at most once a second). */
  async members(): Promise<Member[]> {
    const now = this.deps.clock.now();
    if (this.cached !== undefined && now - this.cached.at < MEMBERS_TTL_MS) return this.cached.members;
    const members = await this.deps.store.members();
    this.cached = { at: now, members };
    return members;
  }

  /**
   * The addresses nodes should know: every serving manager, this one first.
   * Never fails: when the store cannot be read, the last list read (or this
   * manager alone) is still a good answer to a node that was just served.
   */
  async addresses(): Promise<string[]> {
    let members: Member[];
    try {
      members = await this.members();
    } catch {
      members = this.cached?.members ?? [];
    }
    const others = members.map((m) => m.registration.addr).filter((a) => a !== this.addr);
    return [this.addr, ...new Set(others)];
  }

  /** Status of each serving manager, by node ID. */
  async statuses(): Promise<Map<string, ManagerStatus>> {
    return new Map((await this.members()).map((m) => [m.registration.nodeId, m.leader ? 'Leader' : 'Reachable']));
  }

  /** True when this manager holds the leadership. */
  async isLeader(): Promise<boolean> {
    return (await this.members()).some((m) => m.leader && m.registration.nodeId === this.deps.nodeId);
  }
}
