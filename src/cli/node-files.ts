/** A node's own files in its data dir, cleared when it leaves or is joined again with --force. */
import { readFile, rm } from 'node:fs/promises';
import { pathExists, writeFileAtomic } from '../core/atomic-file.js';
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

/*
 * <data-dir>/left holds the ID of the node that `muster leave` takes out,
 * written before the managers are told. Its daemon, told a moment later
 * that the node was removed, reads it to tell a leave (exit 0) from a
 * removal by an admin (exit 3). It names one node ID, so it never speaks
 * for a node joined later into the same data dir.
 */

/** Notes that node `nodeId` leaves (before the managers are told). */
export async function markLeaving(layout: DataDirLayout, nodeId: string): Promise<void> {
  await writeFileAtomic(layout.leftMarker, `${nodeId}\n`, 0o600);
}

/** Takes the note back: the managers did not take the leave. */
export async function unmarkLeaving(layout: DataDirLayout): Promise<void> {
  await rm(layout.leftMarker, { force: true });
}

/** Whether node `nodeId` left with `muster leave` (rather than being removed). */
export async function hasLeft(layout: DataDirLayout, nodeId: string): Promise<boolean> {
  const text = await readFile(layout.leftMarker, 'utf8').catch(() => '');
  return text.trim() === nodeId;
}
