/**
 * The node inventory (SwarmKit's controlapi node.go): listing and showing
 * nodes, a node's own view of itself (with "renew now" advice), removal,
 * promotion and demotion. Every change is a store transaction; the managers
 * index travels in the same transaction, so "the last manager" is decided
 * on what the store holds, not on what one manager believes.
 */
import type { Clock } from '../../core/clock.js';
import { formatDuration, iso } from '../../core/duration.js';
import { DEFAULT_RENEW_GRACE_MS } from '../../api/routes.js';
import { MusterError } from '../../core/errors.js';
import { ID_PATTERN } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { NodeRole } from '../../core/roles.js';
import { KEYS, pages, transact, type ClusterStore, type Tx } from '../../store/cluster-store.js';
import type { NodeRecord } from '../../store/records.js';
import {
  NODES_PAGE,
  type CertificateList,
  type CertificateView,
  type NodeList,
  type NodeView,
  type RenewReason,
  type SelfResponse,
} from '../../api/schemas.js';
import type { Audit } from './audit.js';
import type { LastSeen } from './last-seen.js';
import { who, type Caller } from '../state/caller.js';
import { validCertificatesOf, type Revocations } from './revocations.js';
import { addManager, removeManager } from '../state/managers-index.js';
import type { ManagedMembership } from '../../store/managed-etcd.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { ManagerStatus, Membership } from '../state/membership.js';
import { noteRekey, rekeyIn, type DataKeyRing, type Rekeyed } from '../state/data-key.js';

/** A node that has not been heard from for this long is shown as down. */
export const NODE_DOWN_AFTER_MS = 2 * 60_000;
/** Node records read per store call: memory stays bounded however many nodes joined. */
const SCAN_CHUNK = 500;
/** Records one page of the node list reads at most; a page among many removed nodes ends early, with `next`. */
const MAX_SCAN = 10_000;
/** Matching nodes an ambiguous reference names in its error. */
const SHOWN_MATCHES = 5;

/** What the inventory works with. */
export interface InventoryDeps {
  state: ClusterState;
  store: ClusterStore;
  membership: Membership;
  clock: Clock;
  logger: Logger;
  /** False on an embedded store: only one manager can serve it. */
  sharedStore: boolean;
  /** On a managed store: the etcd membership a removed or demoted manager is taken out of. */
  storeMembership?: () => ManagedMembership | undefined;
  revocations: Revocations;
  audit: Audit;
  /** When a silent node counts as down (default NODE_DOWN_AFTER_MS). */
  downAfterMs?: number;
  /** Last-seen marks, written in batches (no durable write per poll). */
  lastSeen: LastSeen;
  /** Told after this manager removed, promoted or demoted a node (the metrics read the inventory again). */
  changed?: () => void;
  /** The cluster data key: replaced when a manager is demoted, removed or leaves. */
  dataKeys: DataKeyRing;
}

/** What one page of the node list asks for (see NodesQuery). */
export interface NodePageQuery {
  /** The last node ID of the previous page. */
  after?: string;
  /** At most this many nodes (NODES_PAGE.default when absent, never over NODES_PAGE.max). */
  limit?: number;
  /** Include removed nodes. */
  all?: boolean;
}

/** Nodes that match a reference: how many, and the first few. */
interface Matches {
  count: number;
  first: NodeRecord[];
}

function noteMatch(matches: Matches, node: NodeRecord): void {
  matches.count += 1;
  if (matches.first.length < SHOWN_MATCHES) matches.first.push(node);
}

/** Whether a node is removed, heard from lately (ready), or silent (down). */
export function nodeStatus(node: NodeRecord, now: number, downAfterMs = NODE_DOWN_AFTER_MS): NodeView['status'] {
  return node.removed ? 'removed' : now - node.lastSeenAt <= downAfterMs ? 'ready' : 'down';
}

/** A node as the API shows it. */
export function nodeView(node: NodeRecord, now: number, managerStatus?: ManagerStatus, downAfterMs = NODE_DOWN_AFTER_MS): NodeView {
  const view: NodeView = {
    id: node.id,
    role: node.role,
    hostname: node.hostname,
    labels: node.labels,
    status: nodeStatus(node, now, downAfterMs),
    certRole: node.certRole,
    certSerial: node.certSerial,
    certNotAfter: iso(node.certNotAfter),
    createdAt: iso(node.createdAt),
    lastSeenAt: iso(node.lastSeenAt),
    removed: node.removed,
  };
  if (node.role === 'manager' && !node.removed) view.managerStatus = managerStatus ?? 'Unreachable';
  if (node.managerAddr !== undefined) view.managerAddr = node.managerAddr;
  if (node.joinToken !== undefined) view.joinToken = node.joinToken;
  if (node.sanPatterns !== undefined && node.sanPatterns.length > 0) view.sanPatterns = node.sanPatterns;
  return view;
}

/** The nodes of the cluster. */
export class Inventory {
  constructor(private readonly deps: InventoryDeps) {}

  private async view(node: NodeRecord): Promise<NodeView> {
    const statuses = node.role === 'manager' ? await this.managerStatuses() : undefined;
    return nodeView(this.deps.lastSeen.merged(node), this.deps.clock.now(), statuses?.get(node.id), this.deps.downAfterMs);
  }

  /**
   * Each serving manager's status: Leader or Reachable while it is
   * registered; on a managed store, Unreachable too while its etcd member
   * does not answer (its store member is what the quorum counts).
   */
  private async managerStatuses(): Promise<Map<string, ManagerStatus>> {
    const statuses = await this.deps.membership.statuses();
    const managed = this.deps.storeMembership?.();
    if (managed === undefined) return statuses;
    const health = await managed.health().catch(() => undefined);
    for (const member of health ?? []) if (!member.healthy && statuses.has(member.name)) statuses.set(member.name, 'Unreachable');
    return statuses;
  }

  /** The node records after `after` in ID order, a chunk at a time. */
  private async *chunks(after?: string): AsyncGenerator<NodeRecord[]> {
    for await (const chunk of pages(this.deps.store, KEYS.nodes, { after, limit: SCAN_CHUNK })) yield chunk.map((e) => e.value);
  }

  /**
   * One page of the node list in node-ID order, removed nodes only with
   * `all`. Holds one page and one chunk of records, never the whole list;
   * `next` is set when more may follow (a page can be short, even empty,
   * when it stopped after MAX_SCAN records of removed nodes).
   */
  async listNodes(query: NodePageQuery = {}): Promise<NodeList> {
    const limit = Math.min(Math.max(1, query.limit ?? NODES_PAGE.default), NODES_PAGE.max);
    const statuses = await this.managerStatuses();
    const now = this.deps.clock.now();
    const nodes: NodeView[] = [];
    let scanned = 0;
    for await (const chunk of this.chunks(query.after)) {
      for (const node of chunk) {
        if (node.removed && query.all !== true) continue;
        // A node beyond a full page: this page is not the last.
        if (nodes.length === limit) return { nodes, next: nodes[limit - 1]!.id };
        nodes.push(nodeView(this.deps.lastSeen.merged(node), now, statuses.get(node.id), this.deps.downAfterMs));
      }
      scanned += chunk.length;
      if (scanned >= MAX_SCAN) return { nodes, next: chunk[chunk.length - 1]!.id };
    }
    return { nodes };
  }

  /** One node, by reference (see {@link resolve}). */
  async getNode(ref: string, caller?: Caller): Promise<NodeView> {
    return this.view(await this.resolve(ref, caller));
  }

  /**
   * Finds a node the way `docker node` commands do: `self` (the caller's own
   * node), a full ID, a unique ID prefix, or a unique hostname.
   */
  async resolve(ref: string, caller?: Caller): Promise<NodeRecord> {
    if (ref === 'self') {
      if (caller?.node === undefined)
        throw new MusterError('NODE_NOT_FOUND', "'self' names the node whose certificate makes the call; this caller is not a node", {
          hint: 'name the node by ID, ID prefix or hostname',
        });
      return caller.node;
    }
    if (ID_PATTERN.test(ref)) {
      const node = (await this.deps.store.get(KEYS.nodes.ref(ref)))?.value;
      if (node !== undefined) return node;
    }
    // Hostnames are not keys: every record is looked at, a chunk at a time, keeping counts and the first few.
    const live: Matches = { count: 0, first: [] };
    const all: Matches = { count: 0, first: [] };
    if (ref !== '') {
      for await (const chunk of this.chunks()) {
        for (const node of chunk) {
          if (!node.id.startsWith(ref) && node.hostname !== ref) continue;
          noteMatch(all, node);
          if (!node.removed) noteMatch(live, node);
        }
      }
    }
    const candidates = live.count > 0 ? live : all;
    if (candidates.count === 1) return candidates.first[0]!;
    if (candidates.count === 0) throw new MusterError('NODE_NOT_FOUND', `no node ${ref.slice(0, 64)}`);
    const shown = candidates.first.map((n) => `${n.id} (${n.hostname})`).join(', ');
    throw new MusterError('NODE_AMBIGUOUS', `${candidates.count} nodes match ${ref.slice(0, 64)}: ${shown}${candidates.count > SHOWN_MATCHES ? ', …' : ''}`);
  }

  /** The caller's record, whether it should renew now, and the managers to talk to. */
  async self(caller: Caller, options: { fresh?: boolean } = {}): Promise<SelfResponse> {
    // The authoriser read the node's record for this very request; a long poll woken later reads it again.
    const node = await this.touch(caller.nodeId, options.fresh === true ? undefined : caller.node);
    const reason = this.renewReason(caller, node);
    const view: SelfResponse = {
      node: await this.view(node),
      renewNow: reason !== undefined,
      certExpiry: formatDuration(this.deps.state.cluster.certExpiryMs),
      renewGrace: formatDuration(this.deps.state.cluster.renewGraceMs ?? DEFAULT_RENEW_GRACE_MS),
      managers: await this.deps.membership.addresses(),
      rootCA: this.deps.state.trust.bundlePem,
    };
    if (this.deps.state.trust.crossSigned.length > 0) view.crossSigned = this.deps.state.trust.crossSigned.join('');
    const crlNumber = this.deps.revocations.number;
    if (crlNumber !== undefined) view.crlNumber = crlNumber;
    if (reason !== undefined) view.reason = reason;
    return view;
  }

  private renewReason(caller: Caller, node: NodeRecord): RenewReason | undefined {
    if (caller.role !== node.role) return 'role-change';
    // A root rotation: every node renews under the new root (each hears it at its next poll, so renewals spread over a poll interval).
    if (!caller.fromSigningRoot) return 'ca-rotation';
    // A shortened expiry applies at once to certificates that would outlive it, unless an
    // external CA signs: its profile decides the lifetime, and a renewal could not be shorter.
    if (!this.deps.state.signer.external && caller.notAfter - this.deps.clock.now() > this.deps.state.cluster.certExpiryMs + 60_000) return 'cert-expiry';
    return undefined;
  }

  /** Notes that a node was heard from (in memory; written in the next batch) and returns its record as of now. */
  private async touch(id: string, read?: NodeRecord): Promise<NodeRecord> {
    const node = read ?? (ID_PATTERN.test(id) ? (await this.deps.store.get(KEYS.nodes.ref(id)))?.value : undefined);
    if (node === undefined) throw new MusterError('NODE_NOT_FOUND', `no node ${id.slice(0, 64)}`);
    if (node.removed) throw new MusterError('NODE_REMOVED', `node ${id} has been removed`);
    this.deps.lastSeen.mark(id, node.lastSeenAt);
    return this.deps.lastSeen.merged(node);
  }

  /**
   * Marks a node removed: its certificate is refused on every route from now
   * on, and listed on the CRL (with its earlier manager certificates, which
   * could still serve TLS). `revokeAll` (after a key compromise) lists every
   * certificate of the node that is still valid.
   */
  async removeNode(ref: string, options: { force: boolean; revokeAll?: boolean }, caller?: Caller): Promise<NodeView> {
    const { revocations, audit } = this.deps;
    const action = caller?.nodeId === ref ? 'node.leave' : 'node.rm';
    let id = ref;
    try {
      const target = await this.resolve(ref, caller);
      id = target.id;
      if (target.role === 'manager') await this.deps.storeMembership?.()?.checkQuorumWithout(id);
      await revocations.boundSuperseded(target);
      const { removed, serials, rekeyed } = await transact(this.deps.store, async (tx) => {
        const node = await this.require(tx, id);
        if (node.role === 'manager') await this.refuseLastManager(tx, node.id, 'remove');
        const now = this.deps.clock.now();
        if (!options.force && nodeStatus(this.deps.lastSeen.merged(node), now, this.deps.downAfterMs) === 'ready') {
          throw new MusterError('NODE_ACTIVE', `node ${id} is still active (last seen ${iso(node.lastSeenAt)})`);
        }
        const removed: NodeRecord = { ...node, removed: true, removedAt: now };
        tx.put(KEYS.nodes.ref(node.id), removed);
        if (node.role === 'manager') await removeManager(tx, node.id);
        const valid = validCertificatesOf(node, now);
        // The node's service certificates go with it: dockerd or nginx reading the CRL refuse them from now on.
        const services = Object.values(node.services ?? {}).map((c) => ({
          serial: c.serial,
          subject: node.id,
          role: 'service' as const,
          notAfter: c.notAfter,
        }));
        const listed = [...(options.revokeAll === true ? valid : valid.filter((c) => c.serial === node.certSerial || c.role === 'manager')), ...services];
        const serials = await revocations.revoke(tx, listed, options.revokeAll === true ? 'keyCompromise' : 'cessationOfOperation');
        // A manager that goes keeps its copy of the data key: the same transaction replaces the key (see data-key.ts).
        return { removed, serials, rekeyed: node.role === 'manager' ? await rekeyIn(tx, this.deps.dataKeys, { now, leaving: node.id }) : undefined };
      });
      if (target.role === 'manager') await this.leaveStore(removed);
      this.rekeyed(rekeyed, id);
      this.deps.logger.info({ nodeId: id, revoked: serials.length, ...who(caller) }, caller?.nodeId === id ? 'node left' : 'node removed');
      audit.record({ action, caller, target: { node: id }, serials, result: 'ok', details: { force: options.force, revokeAll: options.revokeAll === true } });
      this.deps.changed?.();
      return await this.view(removed);
    } catch (error) {
      audit.record({ action, caller, target: { node: id.slice(0, 64) }, result: error });
      throw error;
    }
  }

  /** A node removing itself (`muster leave`). */
  async leave(caller: Caller): Promise<NodeView> {
    return this.removeNode(caller.nodeId, { force: true }, caller);
  }

  /**
   * Promotes or demotes a node; it is told to renew now, and gets the new
   * role with that certificate. A demotion lists the node's manager
   * certificates on the CRL: they may no longer serve.
   */
  async setRole(ref: string, role: NodeRole, caller?: Caller): Promise<NodeView> {
    const action = role === 'manager' ? 'node.promote' : 'node.demote';
    let id = ref;
    try {
      const target = await this.resolve(ref, caller);
      id = target.id;
      if (role === 'worker' && target.role === 'manager') await this.deps.storeMembership?.()?.checkQuorumWithout(id);
      // A record from before its earlier certificates were bounded: the demotion below lists what is left in one transaction.
      if (role === 'worker') await this.deps.revocations.boundSuperseded(target);
      const { changed, node, serials, rekeyed } = await transact(this.deps.store, async (tx) => {
        const node = await this.require(tx, id);
        if (node.role === role) return { changed: false, node, serials: [], rekeyed: undefined };
        if (role === 'manager' && !this.deps.sharedStore)
          throw new MusterError('EMBEDDED_STORE', `cannot promote ${id}: this cluster keeps its state in an embedded store, which only one manager can serve`);
        if (role === 'worker') await this.refuseLastManager(tx, node.id, 'demote');
        const next: NodeRecord = { ...node, role };
        tx.put(KEYS.nodes.ref(node.id), next);
        if (role === 'manager') await addManager(tx, node.id);
        else await removeManager(tx, node.id);
        const managerCerts = role === 'worker' ? validCertificatesOf(node, this.deps.clock.now()).filter((c) => c.role === 'manager') : [];
        const serials = await this.deps.revocations.revoke(tx, managerCerts, 'privilegeWithdrawn');
        const rekeyed = role === 'worker' ? await rekeyIn(tx, this.deps.dataKeys, { now: this.deps.clock.now(), leaving: node.id }) : undefined;
        return { changed: true, node: next, serials, rekeyed };
      });
      if (changed && role === 'worker') await this.leaveStore(node);
      this.rekeyed(rekeyed, id);
      if (changed) {
        this.deps.logger.info({ nodeId: id, role, ...who(caller) }, role === 'manager' ? 'node promoted' : 'node demoted');
        this.deps.changed?.();
      }
      this.deps.audit.record({ action, caller, target: { node: id }, serials, result: 'ok', details: changed ? undefined : { unchanged: true } });
      return await this.view(node);
    } catch (error) {
      this.deps.audit.record({ action, caller, target: { node: id.slice(0, 64) }, result: error });
      throw error;
    }
  }

  /**
   * One page of the certificates the managers issued, in serial order, with
   * what became of each: valid, superseded (a newer one was issued to the
   * node), revoked, or expired. Records of long-expired certificates are
   * swept by the janitor.
   */
  async listCertificates(query: { after?: string; limit?: number }): Promise<CertificateList> {
    const { store, clock } = this.deps;
    const limit = Math.min(Math.max(1, query.limit ?? NODES_PAGE.default), NODES_PAGE.max);
    const page = await store.list(KEYS.certificates, { ...(query.after === undefined ? {} : { after: query.after }), limit: limit + 1 });
    const shown = page.slice(0, limit);
    const now = clock.now();
    const nodes = new Map<string, Promise<NodeRecord | undefined>>();
    // One read of the denylist (it holds only revoked certificates that are still valid), not one per certificate.
    const revoked = new Set((await store.list(KEYS.revoked)).map((e) => e.id));
    const certificates: CertificateView[] = [];
    for (const { value: cert } of shown) {
      let status: CertificateView['status'] = 'valid';
      if (cert.notAfter <= now) status = 'expired';
      else if (cert.revokedAt !== undefined || revoked.has(cert.serial)) status = 'revoked';
      else if (cert.role !== 'admin') {
        if (!nodes.has(cert.subject))
          nodes.set(
            cert.subject,
            store.get(KEYS.nodes.ref(cert.subject)).then((e) => e?.value),
          );
        const node = await nodes.get(cert.subject);
        if (node === undefined || node.removed) status = 'revoked';
        else if (cert.role === 'service' ? node.services?.[cert.service ?? '']?.serial !== cert.serial : node.certSerial !== cert.serial) status = 'superseded';
      }
      certificates.push({
        serial: cert.serial,
        subject: cert.subject,
        role: cert.role,
        kind: cert.kind,
        ...(cert.service === undefined ? {} : { service: cert.service }),
        ...(cert.sans === undefined ? {} : { sans: cert.sans }),
        issuedAt: iso(cert.issuedAt),
        notBefore: iso(cert.notBefore),
        notAfter: iso(cert.notAfter),
        status,
      });
    }
    return page.length > limit ? { certificates, next: shown.at(-1)!.id } : { certificates };
  }

  /** Refuses to take away the last serving manager (another one must be a manager and serving now). */
  /**
   * A manager demoted, removed or gone: on a managed store its etcd member
   * leaves the store and its certificate's access goes. When the store
   * cannot do it now, the leader's reconciling finishes it later.
   */
  private async leaveStore(node: NodeRecord): Promise<void> {
    const membership = this.deps.storeMembership?.();
    if (membership === undefined) return;
    try {
      await membership.remove(node.id, node.storeMember?.peerAddr);
    } catch (error) {
      this.deps.logger.warn(
        { nodeId: node.id, err: error instanceof Error ? error.message : String(error) },
        'the store could not take the manager out now; it is retried',
      );
    }
  }

  private async refuseLastManager(tx: Tx, id: string, action: 'remove' | 'demote'): Promise<void> {
    const index = await tx.get(KEYS.managers);
    const statuses = await this.managerStatuses();
    const others = (index?.ids ?? []).filter((other) => other !== id && statuses.has(other));
    if (others.length === 0) {
      throw new MusterError('LAST_MANAGER', `cannot ${action} ${id}: it is the last serving manager of the cluster`, {
        hint: this.deps.sharedStore ? 'promote another node first, and wait until it serves' : 'a cluster on the embedded store has exactly one manager',
      });
    }
  }

  /** After a commit that re-keyed: this manager switches to the new key. */
  private rekeyed(rekeyed: Rekeyed | undefined, leaving: string): void {
    if (rekeyed === undefined) return;
    this.deps.dataKeys.adopt(rekeyed);
    noteRekey(this.deps.logger, rekeyed, leaving);
  }

  private async require(tx: Tx, id: string): Promise<NodeRecord> {
    const node = ID_PATTERN.test(id) ? await tx.get(KEYS.nodes.ref(id)) : undefined;
    if (node === undefined) throw new MusterError('NODE_NOT_FOUND', `no node ${id.slice(0, 64)}`);
    if (node.removed) throw new MusterError('NODE_REMOVED', `node ${id} has been removed`);
    return node;
  }
}
