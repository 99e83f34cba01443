/**
 * A manager's own files under `manager/`: which store it serves
 * (store.json: embedded, or etcd endpoints with their client credentials)
 * and the cluster data key (data.key). Both are 0600 in a 0700 folder,
 * written atomically; both stay on the manager.
 */
import { readFile } from 'node:fs/promises';
import Type from 'typebox';
import { ensurePrivateDir, writeFileAtomic } from '../core/atomic-file.js';
import { MusterError } from '../core/errors.js';
import { readJsonFile } from '../core/json-file.js';
import type { DataDirLayout } from './paths.js';

/** An etcd cluster and how to reach it. */
export const EtcdSpec = Type.Object({
  kind: Type.Literal('etcd'),
  endpoints: Type.Array(Type.String(), { minItems: 1 }),
  cacertPem: Type.Optional(Type.String()),
  certPem: Type.Optional(Type.String()),
  keyPem: Type.Optional(Type.String()),
});
export type EtcdSpec = Type.Static<typeof EtcdSpec>;

/** Where a manager's cluster state lives. */
export const StoreSpec = Type.Union([Type.Object({ kind: Type.Literal('level') }), EtcdSpec]);
export type StoreSpec = Type.Static<typeof StoreSpec>;

/** Reads manager/store.json; undefined when the node does not serve (no manager files). */
export function readStoreSpec(layout: DataDirLayout): Promise<StoreSpec | undefined> {
  return readJsonFile(layout.storeJson, StoreSpec, () => 'does not describe a store');
}

/** Reads manager/data.key; STATE_CORRUPT when a manager has none. */
export async function readDataKey(layout: DataDirLayout): Promise<Buffer> {
  let text: string;
  try {
    text = await readFile(layout.dataKey, 'utf8');
  } catch (cause) {
    throw new MusterError('STATE_CORRUPT', `${layout.dataKey} is missing: this manager cannot unseal the CA key`, { cause, hint: 'restore it from a backup of this manager' });
  }
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== 32) throw new MusterError('STATE_CORRUPT', `${layout.dataKey} does not hold a 256-bit key`);
  return key;
}

/** Writes the manager files (store.json and data.key), 0600 under a 0700 manager/. */
export async function writeManagerFiles(layout: DataDirLayout, files: { store: StoreSpec; dataKey: Buffer }): Promise<void> {
  await ensurePrivateDir(layout.managerDir);
  await writeFileAtomic(layout.dataKey, `${files.dataKey.toString('base64')}\n`, 0o600);
  await writeFileAtomic(layout.storeJson, `${JSON.stringify(files.store, null, 2)}\n`, 0o600);
}
