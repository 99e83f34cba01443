/**
 * node.json: who this node is (cluster ID, node ID, role) and where its
 * managers are. Written atomically next to the certificates.
 */
import { readFile } from 'node:fs/promises';
import { MusterError } from '../core/errors.js';
import { isNodeRole, type NodeRole } from '../core/roles.js';
import { writeFileAtomic } from './key-store.js';

/** The contents of node.json. */
export interface NodeState {
  schema: number;
  clusterId: string;
  nodeId: string;
  role: NodeRole;
  /** Manager addresses (host:port) this node talks to, first one first. */
  managers: string[];
  /** Set on the manager that runs the API and store from this data dir. */
  manager?: { listenAddr: string; advertiseAddr: string };
}

/** Reads node.json, or undefined when the data dir holds no node yet. */
export async function readNodeState(file: string): Promise<NodeState | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new MusterError('STATE_CORRUPT', `${file} is not valid JSON`, { cause });
  }
  const state = value as Partial<NodeState>;
  if (typeof state.clusterId !== 'string' || typeof state.nodeId !== 'string' || !isNodeRole(state.role) || !Array.isArray(state.managers)) {
    throw new MusterError('STATE_CORRUPT', `${file} is missing fields`);
  }
  return state as NodeState;
}

/** Writes node.json atomically (0600: it names managers and roles, not secrets, but nobody else needs it). */
export async function writeNodeState(file: string, state: NodeState): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(state, null, 2)}\n`, 0o600);
}
