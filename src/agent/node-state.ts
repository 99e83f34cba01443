/**
 * node.json: who this node is (cluster ID, node ID, role), where its
 * managers are, and where it serves when it is a manager. Written
 * atomically next to the certificates; read against its schema.
 */
import Type from 'typebox';
import { writeFileAtomic } from '../core/atomic-file.js';
import { readJsonFile } from '../core/json-file.js';

/** The version of node.json's shape. */
export const NODE_STATE_SCHEMA = 2;

/** The contents of node.json. */
export const NodeState = Type.Object({
  schema: Type.Literal(NODE_STATE_SCHEMA),
  clusterId: Type.String({ pattern: '^[0-9a-z]{25}$' }),
  nodeId: Type.String({ pattern: '^[0-9a-z]{25}$' }),
  role: Type.Union([Type.Literal('worker'), Type.Literal('manager')]),
  /** Manager addresses (host:port) this node talks to, as the managers last told it. */
  managers: Type.Array(Type.String(), { minItems: 1 }),
  /** Where this node listens and what it advertises when it serves as a manager. */
  listenAddr: Type.Optional(Type.String()),
  advertiseAddr: Type.Optional(Type.String()),
  /** The address this node's manager serves on now (the advertise address, port 0 resolved); absent when it does not serve. */
  servingAddr: Type.Optional(Type.String()),
  /**
   * Where this node's etcd member runs should it serve a managed store (its
   * join's --etcd-* flags, else etcd's ports on its advertise host): sent
   * with each renewal, so a promotion adds its member there.
   */
  storeMember: Type.Optional(Type.Object({ clientAddr: Type.String(), peerAddr: Type.String(), binary: Type.Optional(Type.String()) })),
});
export type NodeState = Type.Static<typeof NodeState>;

/** Reads node.json, or undefined when the data dir holds no node yet. */
export function readNodeState(file: string): Promise<NodeState | undefined> {
  return readJsonFile(file, NodeState, (value) => {
    const schema = (value as { schema?: unknown } | null)?.schema;
    return schema !== NODE_STATE_SCHEMA ? `was written by another version of muster (schema ${String(schema)})` : 'is missing fields';
  });
}

/** Writes node.json atomically (0600: it names managers and roles, not secrets, but nobody else needs it). */
export async function writeNodeState(file: string, state: NodeState): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(state, null, 2)}\n`, 0o600);
}
