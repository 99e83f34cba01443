/** A node's own files in its data dir, cleared when it leaves or is joined again with --force. */
import { rm } from 'node:fs/promises';
import { pathExists } from '../core/atomic-file.js';
import { MusterError } from '../core/errors.js';
import { readStoreSpec } from '../config/manager-files.js';
import type { DataDirLayout } from '../config/paths.js';
import { KeyStore } from '../agent/key-store.js';

/**
 * Deletes a node's own files: key, certificates, node.json and, on a shared
 * store, its copy of the store credentials and data key. The embedded store
 * is never deleted here (its manager is the cluster's only one).
 */
export async function clearNodeFiles(layout: DataDirLayout): Promise<void> {
  await new KeyStore(layout).remove();
  await rm(layout.nodeJson, { force: true });
  const spec = await readStoreSpec(layout).catch(() => undefined);
  if (spec?.kind === 'etcd') {
    await rm(layout.storeJson, { force: true });
    await rm(layout.dataKey, { force: true });
  }
}

/** Clears a data dir for `join --force`; refuses one that holds an embedded cluster store (the cluster's only copy). */
export async function clearForRejoin(layout: DataDirLayout): Promise<void> {
  if (await pathExists(layout.dbDir)) {
    throw new MusterError('CLUSTER_EXISTS', `${layout.dataDir} holds the embedded store of a cluster; --force would destroy that cluster`, {
      hint: 'join into another --data-dir; to end that cluster, stop its manager and delete the data dir yourself',
    });
  }
  await clearNodeFiles(layout);
}
