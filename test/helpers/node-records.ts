/** Node and certificate records written straight into a store: thousands in a moment, where joins would sign a certificate each. */
import { KEYS, type ClusterStore } from '../../src/store/cluster-store.js';
import { SCHEMA_VERSION, type CertificateRecord, type NodeRecord } from '../../src/store/records.js';

/** `count` node IDs in key order: `prefix` then digits, 25 characters like real ones. */
export function nodeIds(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(25 - prefix.length, '0')}`);
}

/** A worker's record as a join writes it, with a certificate valid until `certNotAfter`. */
export function nodeRecord(id: string, overrides: Partial<NodeRecord> = {}): NodeRecord {
  return {
    schema: SCHEMA_VERSION,
    id,
    role: 'worker',
    hostname: `host-${id.slice(-6)}`,
    labels: {},
    createdAt: 1,
    lastSeenAt: 1,
    certSerial: `C${id.toUpperCase()}`,
    certNotAfter: 2,
    certRole: 'worker',
    removed: false,
    ...overrides,
  };
}

/** The record of `node`'s current certificate. */
export function certificateRecord(node: NodeRecord): CertificateRecord {
  return {
    schema: SCHEMA_VERSION,
    serial: node.certSerial,
    subject: node.id,
    role: node.certRole,
    kind: 'join',
    issuedAt: 1,
    notBefore: 1,
    notAfter: node.certNotAfter,
  };
}

/** Writes the records, a thousand per commit. */
export async function seedNodes(store: ClusterStore, nodes: readonly NodeRecord[], options: { certificates?: boolean } = {}): Promise<void> {
  for (let i = 0; i < nodes.length; i += 1000) {
    const puts = nodes
      .slice(i, i + 1000)
      .flatMap((node) => [
        { key: KEYS.nodes.ref(node.id).key, value: node },
        ...(options.certificates === true ? [{ key: KEYS.certificates.ref(node.certSerial).key, value: certificateRecord(node) }] : []),
      ]);
    if (!(await store.commit({ compares: [], puts, deletes: [] }))) throw new Error('seeding the store failed');
  }
}
