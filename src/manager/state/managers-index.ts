/** The managers index (meta/managers): which nodes hold the manager role, changed in the same transaction as their records. */
import { KEYS, type Tx } from '../../store/cluster-store.js';
import { SCHEMA_VERSION } from '../../store/records.js';

/** Adds a node to the index. */
export async function addManager(tx: Tx, nodeId: string): Promise<void> {
  const index = (await tx.get(KEYS.managers)) ?? { schema: SCHEMA_VERSION, ids: [] };
  if (!index.ids.includes(nodeId)) tx.put(KEYS.managers, { ...index, ids: [...index.ids, nodeId] });
}

/** Removes a node from the index. */
export async function removeManager(tx: Tx, nodeId: string): Promise<void> {
  const index = await tx.get(KEYS.managers);
  if (index?.ids.includes(nodeId) === true) tx.put(KEYS.managers, { ...index, ids: index.ids.filter((id) => id !== nodeId) });
}
