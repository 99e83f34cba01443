/**
 * node.json: who this node is (cluster ID, node ID, role), where its
 * managers are, and where it serves when it is a manager. Written
 * atomically next to the certificates; read against its schema
 * (node-state-schema.ts, checked here in its plain form: every client
 * command reads node.json, and TypeBox alone would double its start-up).
 */
import { writeFileAtomic } from '../core/atomic-file.js';
import { readJsonFile } from '../core/json-file.js';
import { checkSchema } from '../core/schema-check.js';
import type { NodeState } from './node-state-schema.js';
import { NodeState as NodeStatePlain } from './node-state-plain.js';

export type { NodeState };

/** The version of node.json's shape. */
export const NODE_STATE_SCHEMA = 2;

/** Reads node.json, or undefined when the data dir holds no node yet. */
export function readNodeState(file: string): Promise<NodeState | undefined> {
  return readJsonFile(
    file,
    (value) => checkSchema(NodeStatePlain, value),
    (value) => {
      const schema = (value as { schema?: unknown } | null)?.schema;
      return schema !== NODE_STATE_SCHEMA ? `was written by another version of muster (schema ${String(schema)})` : 'is missing fields';
    },
  );
}

/** Writes node.json atomically (0600: it names managers and roles, not secrets, but nobody else needs it). */
export async function writeNodeState(file: string, state: NodeState): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(state, null, 2)}\n`, 0o600);
}

/** The managers a local client tries: this node's own manager first. */
export function localManagers(state: NodeState): string[] {
  const own = state.servingAddr;
  return own === undefined ? [...state.managers] : [own, ...state.managers.filter((m) => m !== own)];
}
