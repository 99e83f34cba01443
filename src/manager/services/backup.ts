/**
 * Backup and restore, the cluster side (the file format is store/backup.ts).
 *
 * A backup is made by the running manager (it holds the store open, and the
 * data key): one consistent dump of the store, and the data key wrapped
 * under the cluster's unlock key when autolock is on (a restore then asks
 * for that key, and stays under autolock with it), else under a fresh backup
 * key that goes back to the caller once and is kept nowhere.
 *
 * A restore founds a one-manager cluster from a backup, as `init` founds
 * one: same cluster ID, root, tokens, settings and node records, a new
 * manager identity for this machine signed by the root from the backup,
 * and every manager of the backup removed and its manager certificates on
 * the CRL, so that none comes back with its old access. Workers stay: they
 * renew against the restored manager once they reach it.
 */
import type { DataKeyRing } from '../state/data-key.js';
import type { DataKeyRecord } from '../../store/records.js';
import type { Clock } from '../../core/clock.js';
import { MusterError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Random } from '../../core/random.js';
import { rootDigest } from '../../pki/ca.js';
import type { IssuedCertificate } from '../../pki/issue.js';
import { seal, unseal } from '../../pki/seal.js';
import { formatUnlockKey, generateUnlockKey, keyEncryptionKey, unlockKeyId } from '../../token/unlock-key.js';
import { backupContent, backupMac, checkBackupRecords, type BackupFile, type BackupKeyWrap, type BackupRecord } from '../../store/backup.js';
import { KEYS, type ClusterStore } from '../../store/cluster-store.js';
import {
  SCHEMA_VERSION,
  type AutolockRecord,
  type CaRecord,
  type CrlRecord,
  type ManagersRecord,
  type NodeRecord,
  type RevokedRecord,
} from '../../store/records.js';
import type { Audit } from './audit.js';
import type { Caller } from '../state/caller.js';
import { certificateRecord } from './ca-server.js';
import { founderRecord, issueFounderCertificate } from './founding.js';
import { revokedRecord, validCertificatesOf } from './revocations.js';
import { createSigner } from '../state/signer.js';

/** The context the data key is sealed under in a backup (bound to the cluster). */
const wrapContext = (clusterId: string): string => `muster backup: data key of cluster ${clusterId}`;

/** Seals the data key under a key derived from `key` (an unlock key or a backup key: both 32 random bytes). */
function wrapDataKey(dataKey: Buffer, key: Buffer, under: BackupKeyWrap['under'], clusterId: string): BackupKeyWrap {
  return { under, kdf: 'HKDF-SHA256', keyId: unlockKeyId(key), sealed: seal(keyEncryptionKey(key), dataKey, wrapContext(clusterId)) };
}

/**
 * Opens a backup with the operator's key: the data key, once the MAC over
 * the records proves the file intact. BACKUP_KEY_WRONG for another key,
 * BACKUP_INVALID for a damaged or edited file.
 */
export function openBackup(file: BackupFile, key: Buffer): Buffer {
  const what = file.dataKey.under === 'unlock-key' ? "the cluster's unlock key" : 'the backup key printed when it was made';
  if (unlockKeyId(key) !== file.dataKey.keyId) throw new MusterError('BACKUP_KEY_WRONG', `the key does not open this backup: it needs ${what}`);
  let dataKey: Buffer;
  try {
    dataKey = unseal(keyEncryptionKey(key), file.dataKey.sealed, wrapContext(file.clusterId));
  } catch {
    throw new MusterError('BACKUP_INVALID', "the backup's data key is damaged: the right key does not open it");
  }
  if (backupMac(dataKey, file) !== file.mac) throw new MusterError('BACKUP_INVALID', 'the backup has been damaged or edited: its records do not match its MAC');
  return dataKey;
}

/** What {@link Backups.make} answers: the file, and the backup key when one was made for it (never stored). */
export interface MadeBackup {
  backup: BackupFile;
  /** SWMKEY-… text of a fresh backup key; absent under autolock (the unlock key opens the backup) and when the caller gave the key. */
  backupKey?: string;
}

/** Makes backups of the store this manager serves. */
export class Backups {
  constructor(
    private readonly deps: { store: ClusterStore; dataKeys: DataKeyRing; nodeId: string; clock: Clock; random: Random; logger: Logger; audit: Audit },
  ) {}

  /**
   * Dumps the store at one point and wraps the data key (see the file
   * comment): under `backupKey` when given (scheduled backups), else under a
   * fresh one that is returned. USAGE for a backup key under autolock.
   */
  async make(backupKey?: Buffer, caller?: Caller): Promise<MadeBackup> {
    const { store, dataKeys, clock, random, logger, audit } = this.deps;
    try {
      const dump = await store.dump();
      // The key the dumped values are sealed under: the one its data-key record names (a re-key may have run since).
      const keyRecord = dump.records.find((r) => r.key === KEYS.dataKey.key)?.value as DataKeyRecord | undefined;
      const dataKey = keyRecord === undefined ? dataKeys.current() : dataKeys.keyOf(keyRecord);
      const content = backupContent(dump, { createdAt: clock.now(), source: store.description, madeBy: this.deps.nodeId });
      const autolock = dump.records.find((r) => r.key === KEYS.autolock.key)?.value as AutolockRecord | undefined;
      let fresh: Buffer | undefined;
      let wrap: BackupKeyWrap;
      if (autolock?.enabled === true && autolock.unlockKey !== undefined) {
        if (backupKey !== undefined)
          throw new MusterError('USAGE', "autolock is on: a backup opens with the cluster's unlock key, not a backup key", { hint: 'leave out --key-file' });
        wrap = wrapDataKey(dataKey, unseal(dataKey, autolock.unlockKey, KEYS.autolock.key), 'unlock-key', content.clusterId);
      } else {
        if (backupKey === undefined) fresh = generateUnlockKey(random);
        wrap = wrapDataKey(dataKey, backupKey ?? fresh!, 'backup-key', content.clusterId);
      }
      const backup: BackupFile = { ...content, dataKey: wrap, mac: backupMac(dataKey, content) };
      audit.record({ action: 'store.backup', caller, result: 'ok', details: { revision: dump.revision, records: dump.records.length, under: wrap.under } });
      logger.info({ revision: dump.revision, records: dump.records.length, under: wrap.under }, 'backup made');
      return fresh === undefined ? { backup } : { backup, backupKey: formatUnlockKey(fresh) };
    } catch (error) {
      audit.record({ action: 'store.backup', caller, result: error });
      throw error;
    }
  }
}

/** What a restore needs. */
export interface RestoreParams {
  /** An empty store (the new embedded store). */
  store: ClusterStore;
  backup: BackupFile;
  /** The data key {@link openBackup} gave. */
  dataKey: Buffer;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** The new manager's CSR (its key stays in its data dir). */
  csrPem: string;
  hostname: string;
  /** Where the restored manager serves (host:port); its host goes into its certificate. */
  managerAddr: string;
  /** Runs once the certificate is issued, before the store commits (the caller writes the key pair and node.json). */
  beforeCommit?: (restored: Restored) => Promise<void>;
}

/** A restored cluster. */
export interface Restored {
  clusterId: string;
  nodeId: string;
  certificate: IssuedCertificate;
  rootPem: string;
  /** Node IDs of the backup's managers, now removed. */
  droppedManagers: string[];
  /** Records of kinds this version does not know, not restored. */
  skipped: string[];
  nodes: number;
  /** Whether the cluster is under autolock (the restored manager starts locked). */
  autolock: boolean;
}

/** Puts per commit: etcd's Txn limit does not apply to LevelDB, but a store of many nodes is written in parts all the same. */
const CHUNK = 500;

/** Founds a one-manager cluster in `store` from a backup (see the file comment). */
export async function restoreCluster(params: RestoreParams): Promise<Restored> {
  const { store, backup, dataKey, clock, random } = params;
  if ((await store.get(KEYS.cluster)) !== undefined) throw new MusterError('CLUSTER_EXISTS');
  const { cluster, known, skipped } = checkBackupRecords(backup);
  const byKey = new Map(known.map((r) => [r.key, r.value]));
  const ca = byKey.get(KEYS.ca.key) as CaRecord;
  const autolock = byKey.get(KEYS.autolock.key) as AutolockRecord | undefined;
  const now = clock.now();
  const nodeId = newId(random);
  const signer = createSigner(ca, { clock, random, logger: params.logger, dataKey });
  const certificate = await issueFounderCertificate(signer, {
    csrPem: params.csrPem,
    nodeId,
    clusterId: cluster.clusterId,
    managerAddr: params.managerAddr,
    validityMs: cluster.certExpiryMs,
  });

  // The backup's managers: removed, and their manager certificates listed on the CRL, as 'node rm' does.
  const records: BackupRecord[] = [];
  const dropped: string[] = [];
  const revoked: RevokedRecord[] = [];
  let nodes = 0;
  for (const record of known) {
    if (record.key === KEYS.cluster.key || record.key === KEYS.managers.key || record.key === KEYS.crl.key) continue; // written below
    if (!record.key.startsWith(KEYS.nodes.prefix)) {
      records.push(record);
      continue;
    }
    const node = record.value as NodeRecord;
    nodes += 1;
    if (node.role !== 'manager' || node.removed) {
      records.push(record);
      continue;
    }
    dropped.push(node.id);
    records.push({ key: record.key, value: { ...node, removed: true, removedAt: now } satisfies NodeRecord });
    for (const cert of validCertificatesOf(node, now).filter((c) => c.serial === node.certSerial || c.role === 'manager')) {
      revoked.push(revokedRecord(cert, now, 'cessationOfOperation'));
    }
  }
  for (const entry of revoked) {
    const key = KEYS.revoked.ref(entry.serial).key;
    const at = records.findIndex((r) => r.key === key);
    if (at >= 0) records.splice(at, 1);
    records.push({ key, value: entry });
  }
  const previousCrl = byKey.get(KEYS.crl.key) as CrlRecord | undefined;
  const crlNumber = (previousCrl?.number ?? 0) + 1;
  const crl: CrlRecord = {
    schema: SCHEMA_VERSION,
    number: crlNumber,
    thisUpdate: now,
    changedAt: revoked.length > 0 ? crlNumber : (previousCrl?.changedAt ?? 0),
  };
  const digest = rootDigest(ca.rootPem);
  const self = founderRecord(nodeId, params, certificate, digest.toString('hex'), now);
  records.push(
    { key: KEYS.nodes.ref(nodeId).key, value: self },
    { key: KEYS.certificates.ref(certificate.serial).key, value: certificateRecord(nodeId, 'manager', 'init', now, certificate) },
    { key: KEYS.managers.key, value: { schema: SCHEMA_VERSION, ids: [nodeId] } satisfies ManagersRecord },
    { key: KEYS.crl.key, value: crl },
  );
  const restored: Restored = {
    clusterId: cluster.clusterId,
    nodeId,
    certificate,
    rootPem: ca.rootPem,
    droppedManagers: dropped,
    skipped,
    nodes: nodes + 1,
    autolock: autolock?.enabled === true,
  };
  await params.beforeCommit?.(restored);
  // Everything else first, the cluster record last and alone: a restore cut short leaves no cluster record, and is redone.
  for (let i = 0; i < records.length; i += CHUNK) {
    if (!(await store.commit({ compares: [], puts: records.slice(i, i + CHUNK), deletes: [] }))) throw new MusterError('STORE_CONFLICT');
  }
  if (!(await store.commit({ compares: [{ key: KEYS.cluster.key, version: 0 }], puts: [{ key: KEYS.cluster.key, value: cluster }], deletes: [] })))
    throw new MusterError('CLUSTER_EXISTS');
  return restored;
}
