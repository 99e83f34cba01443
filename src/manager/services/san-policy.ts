/**
 * Which names a node's service certificates may carry (issue 28), decided by
 * the managers: the node's hostname and advertise address, the patterns the
 * admins allow for that node (`muster node update --add-san PATTERN NODE`),
 * and those they allow for every node with a label (`--for-label KEY=VALUE`).
 * A node cannot widen its own list: its labels and patterns are written by
 * admins (or by the scoped token it joined with), never by the node.
 */
import { MusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { parseHostPort } from '../../core/address.js';
import { normalisePattern, normaliseSan, sanMatches } from '../../core/san-pattern.js';
import { KEYS, transact, type ClusterStore } from '../../store/cluster-store.js';
import { SCHEMA_VERSION, type NodeRecord, type SanPolicyRecord } from '../../store/records.js';
import type { NodePatch, NodeView, SanPolicyPatch, SanPolicyView } from '../../api/schemas.js';
import type { Audit } from './audit.js';
import { who, type Caller } from '../state/caller.js';
import type { Inventory } from './inventory.js';

/** A name as the policy compares it, or undefined when it is not a valid certificate name (a hostname with odd characters). */
function tryNormalise(text: string): string | undefined {
  try {
    return normaliseSan(text);
  } catch {
    return undefined;
  }
}

/** The names that are the node's own: its hostname and its advertise host. */
export function ownNames(node: NodeRecord): string[] {
  const names = [tryNormalise(node.hostname)];
  if (node.managerAddr !== undefined) names.push(tryNormalise(parseHostPort(node.managerAddr).host));
  return [...new Set(names.filter((name): name is string => name !== undefined))];
}

/** Adds then removes patterns (each normalised; SAN_INVALID for one that is no name, `*.name` or IP). */
function edited(list: readonly string[], add: readonly string[] | undefined, rm: readonly string[] | undefined): string[] {
  const removed = new Set((rm ?? []).map(normalisePattern));
  const next = [...list];
  for (const pattern of (add ?? []).map(normalisePattern)) if (!next.includes(pattern)) next.push(pattern);
  return next.filter((pattern) => !removed.has(pattern));
}

/** The managers' SAN policy for service certificates. */
export class SanPolicy {
  constructor(private readonly deps: { store: ClusterStore; inventory: Inventory; audit: Audit; logger: Logger }) {}

  /** The label rules as the store holds them. */
  private async labelRules(): Promise<SanPolicyRecord['labels']> {
    return (await this.deps.store.get(KEYS.sanPolicy))?.value.labels ?? {};
  }

  /** GET /v1/san-policy */
  async view(): Promise<SanPolicyView> {
    const labels = await this.labelRules();
    return { labels: Object.entries(labels).map(([label, patterns]) => ({ label, patterns })) };
  }

  /** Every pattern `node` may name: its own names, its own patterns, and its labels'. */
  async patternsFor(node: NodeRecord): Promise<string[]> {
    const labels = await this.labelRules();
    const byLabel = Object.entries(node.labels).flatMap(([key, value]) => labels[`${key}=${value}`] ?? []);
    return [...new Set([...ownNames(node), ...(node.sanPatterns ?? []), ...byLabel])];
  }

  /**
   * The names a service certificate of `node` will carry: those asked for
   * (normalised), or the node's own when none were; SAN_NOT_ALLOWED naming
   * each one no pattern allows.
   */
  async check(node: NodeRecord, asked: readonly string[]): Promise<string[]> {
    const sans = asked.length === 0 ? ownNames(node) : [...new Set(asked.map(normaliseSan))];
    if (sans.length === 0)
      throw new MusterError('SAN_INVALID', 'the node has no hostname or advertise address a certificate can name', { hint: 'name one with --san' });
    const patterns = await this.patternsFor(node);
    const refused = sans.filter((san) => !patterns.some((pattern) => sanMatches(pattern, san)));
    if (refused.length > 0) {
      throw new MusterError('SAN_NOT_ALLOWED', `node ${node.hostname} (${node.id}) may not name ${refused.join(', ')} in a service certificate`, {
        hint: `it may name ${patterns.join(', ') || 'nothing yet'}; an admin allows more with 'muster node update --add-san PATTERN ${node.id}'`,
        details: { refused },
      });
    }
    return sans;
  }

  /** PATCH /v1/nodes/{id}: the node's own patterns. */
  async updateNode(ref: string, patch: NodePatch, caller?: Caller): Promise<NodeView> {
    const { store, inventory, audit, logger } = this.deps;
    let id = ref;
    try {
      const target = await inventory.resolve(ref, caller);
      id = target.id;
      const patterns = await transact(store, async (tx) => {
        const node = await tx.get(KEYS.nodes.ref(id));
        if (node === undefined) throw new MusterError('NODE_NOT_FOUND', `no node ${id}`);
        if (node.removed) throw new MusterError('NODE_REMOVED', `node ${id} has been removed`);
        const sanPatterns = edited(node.sanPatterns ?? [], patch.addSans, patch.rmSans);
        const { sanPatterns: _old, ...rest } = node;
        tx.put(KEYS.nodes.ref(id), sanPatterns.length === 0 ? rest : { ...rest, sanPatterns });
        return sanPatterns;
      });
      audit.record({ action: 'node.update', caller, target: { node: id }, result: 'ok', details: { sanPatterns: patterns } });
      logger.info({ nodeId: id, sanPatterns: patterns, ...who(caller) }, 'service certificate names allowed for a node changed');
      return await inventory.getNode(id);
    } catch (error) {
      audit.record({ action: 'node.update', caller, target: { node: id.slice(0, 64) }, result: error });
      throw error;
    }
  }

  /** PATCH /v1/san-policy: the patterns of one label. */
  async updateLabel(patch: SanPolicyPatch, caller?: Caller): Promise<SanPolicyView> {
    const { store, audit, logger } = this.deps;
    try {
      const patterns = await transact(store, async (tx) => {
        const labels = { ...((await tx.get(KEYS.sanPolicy))?.labels ?? {}) };
        const next = edited(labels[patch.label] ?? [], patch.addSans, patch.rmSans);
        if (next.length === 0) delete labels[patch.label];
        else labels[patch.label] = next;
        tx.put(KEYS.sanPolicy, { schema: SCHEMA_VERSION, labels });
        return next;
      });
      audit.record({ action: 'san-policy.update', caller, target: { label: patch.label.slice(0, 300) }, result: 'ok', details: { sanPatterns: patterns } });
      logger.info({ label: patch.label, sanPatterns: patterns, ...who(caller) }, 'service certificate names allowed for a label changed');
      return await this.view();
    } catch (error) {
      audit.record({ action: 'san-policy.update', caller, target: { label: patch.label.slice(0, 300) }, result: error });
      throw error;
    }
  }
}
