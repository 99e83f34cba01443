/**
 * A manager's own files under `manager/`: which store it serves
 * (store.json: embedded, or etcd endpoints with their client credentials)
 * and the cluster data key (data.key). Both are 0600 in a 0700 folder,
 * written atomically; both stay on the manager.
 *
 * With autolock on, data.key holds the data key wrapped (AES-256-GCM) under
 * a key derived from the unlock key, and the etcd client key in store.json
 * is sealed under the data key; this module reads and writes those shapes,
 * the CLI's local lock does the cryptography.
 */
import { readFile } from 'node:fs/promises';
import Type from 'typebox';
import Value from 'typebox/value';
import { ensurePrivateDir, writeFileAtomic } from '../core/atomic-file.js';
import { MusterError } from '../core/errors.js';
import { parseJsonText, readJsonFile } from '../core/json-file.js';
import type { DataDirLayout } from './paths.js';

/** A secret sealed with AES-256-GCM: nonce and ciphertext with its tag, base64. */
export const SealedFile = Type.Object({ alg: Type.Literal('A256GCM'), iv: Type.String(), data: Type.String() });
export type SealedFile = Type.Static<typeof SealedFile>;

/** An etcd cluster and how to reach it. */
export const EtcdSpec = Type.Object({
  kind: Type.Literal('etcd'),
  endpoints: Type.Array(Type.String(), { minItems: 1 }),
  cacertPem: Type.Optional(Type.String()),
  certPem: Type.Optional(Type.String()),
  keyPem: Type.Optional(Type.String()),
  /** The client key sealed under the data key, in place of keyPem, while autolock is on. */
  keySealed: Type.Optional(SealedFile),
});
export type EtcdSpec = Type.Static<typeof EtcdSpec>;

/**
 * A managed store (`init --store etcd`): this manager runs its own etcd
 * member, and opens it with its own certificate (no credential of its own in
 * this file: the member's TLS files are the node's key and certificate).
 */
export const ManagedEtcdSpec = Type.Object({
  kind: Type.Literal('etcd-managed'),
  /** host:port clients and peers reach this member on, and where it listens. */
  clientAddr: Type.String(),
  peerAddr: Type.String(),
  listenClientAddr: Type.String(),
  listenPeerAddr: Type.String(),
  /** Unique per founded cluster (its ID), so members of two clusters never mix. */
  clusterToken: Type.String(),
  /** name=https://peer,… as etcd reads it on the member's first start. */
  initialCluster: Type.String(),
  /** 'new' for the founder, 'existing' for a member added to a running cluster. */
  clusterState: Type.Union([Type.Literal('new'), Type.Literal('existing')]),
  /** Client host:port of the other members, last known (the client tries them too). */
  endpoints: Type.Array(Type.String()),
  /** Set when this member joined as a learner and has not yet been promoted to a voting member. */
  learner: Type.Optional(Type.Boolean()),
  /** --etcd-binary, when not the `etcd` on the PATH. */
  binary: Type.Optional(Type.String()),
});
export type ManagedEtcdSpec = Type.Static<typeof ManagedEtcdSpec>;

/** Where a manager's cluster state lives. */
export const StoreSpec = Type.Union([Type.Object({ kind: Type.Literal('level') }), EtcdSpec, ManagedEtcdSpec]);
export type StoreSpec = Type.Static<typeof StoreSpec>;

/** Reads manager/store.json; undefined when the node does not serve (no manager files). */
export function readStoreSpec(layout: DataDirLayout): Promise<StoreSpec | undefined> {
  return readJsonFile(
    layout.storeJson,
    (value) => Value.Check(StoreSpec, value),
    () => 'does not describe a store',
  );
}

/** One wrapping of the data key: under which unlock key (its public ID), and the ciphertext. */
export const DataKeyWrap = Type.Object({ keyId: Type.String({ pattern: '^[0-9a-f]{16}$' }), sealed: SealedFile });
export type DataKeyWrap = Type.Static<typeof DataKeyWrap>;

/**
 * data.key under autolock: the data key wrapped under the current unlock
 * key, and for a while after a rotation under the previous one too.
 */
export const WrappedDataKey = Type.Object({
  format: Type.Literal('muster-wrapped-data-key/1'),
  kdf: Type.Literal('HKDF-SHA256'),
  wraps: Type.Array(DataKeyWrap, { minItems: 1, maxItems: 2 }),
  /** A running manager drops the second wrap at this instant (ms since the epoch). */
  previousUntil: Type.Optional(Type.Integer({ minimum: 0 })),
  /** During a re-key: the data key before it, sealed under the new one, until node.key and store.json are sealed under the new key. */
  retired: Type.Optional(SealedFile),
});
export type WrappedDataKey = Type.Static<typeof WrappedDataKey>;

/** What data.key holds: the key in clear, or wrapped under unlock keys. */
export type DataKeyFile = { locked: false; key: Buffer } | { locked: true; wrapped: WrappedDataKey };

/** Reads manager/data.key in either shape; STATE_CORRUPT when a manager has none. */
export async function readDataKeyFile(layout: DataDirLayout): Promise<DataKeyFile> {
  let text: string;
  try {
    text = await readFile(layout.dataKey, 'utf8');
  } catch (cause) {
    throw new MusterError('STATE_CORRUPT', `${layout.dataKey} is missing: this manager cannot unseal the CA key`, {
      cause,
      hint: 'restore it from a backup of this manager',
    });
  }
  if (text.trimStart().startsWith('{'))
    return {
      locked: true,
      wrapped: parseJsonText(
        layout.dataKey,
        text,
        (value) => Value.Check(WrappedDataKey, value),
        () => 'is not a wrapped data key',
      ),
    };
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== 32) throw new MusterError('STATE_CORRUPT', `${layout.dataKey} does not hold a 256-bit key`);
  return { locked: false, key };
}

/** Reads manager/data.key in clear; MANAGER_LOCKED when autolock wraps it. */
export async function readDataKey(layout: DataDirLayout): Promise<Buffer> {
  const file = await readDataKeyFile(layout);
  if (file.locked) throw new MusterError('MANAGER_LOCKED');
  return file.key;
}

/** Replaces data.key (one atomic rename): the key in clear, or its wrappings. */
export async function writeDataKeyFile(layout: DataDirLayout, file: { key: Buffer } | { wrapped: WrappedDataKey }): Promise<void> {
  await ensurePrivateDir(layout.managerDir);
  await writeFileAtomic(layout.dataKey, 'key' in file ? `${file.key.toString('base64')}\n` : `${JSON.stringify(file.wrapped, null, 2)}\n`, 0o600);
}

/** Replaces store.json (one atomic rename). */
export async function writeStoreSpec(layout: DataDirLayout, store: StoreSpec): Promise<void> {
  await ensurePrivateDir(layout.managerDir);
  await writeFileAtomic(layout.storeJson, `${JSON.stringify(store, null, 2)}\n`, 0o600);
}

/** Writes the manager files (store.json and data.key), 0600 under a 0700 manager/. */
export async function writeManagerFiles(layout: DataDirLayout, files: { store: StoreSpec; dataKey: Buffer }): Promise<void> {
  await writeDataKeyFile(layout, { key: files.dataKey });
  await writeStoreSpec(layout, files.store);
}
