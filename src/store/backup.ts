/**
 * The backup file (`muster store backup`, `muster store restore`): every
 * record of the cluster store read at one store revision, values exactly as
 * stored (sealed values stay sealed), and the cluster data key wrapped under
 * a key the operator holds (the cluster's unlock key under autolock, else a
 * backup key printed once when the backup is made). An HMAC under a key
 * derived from the data key covers the records and the header, so a damaged
 * or edited file is refused once the data key is open.
 *
 * Format (JSON, one object):
 *   {format: 'muster-backup/1', clusterId, createdAt, revision, source, madeBy,
 *    dataKey: {under: 'unlock-key'|'backup-key', kdf, keyId, sealed},
 *    mac, records: [{key, value}]}
 */
import { createHmac, hkdfSync } from 'node:crypto';
import Type from 'typebox';
import { Compile } from 'typebox/compile';
import { MusterError } from '../core/errors.js';
import { KEYS, decodeRecord, type Ref, type Space, type StoreDump } from './cluster-store.js';
import { Sealed, type ClusterRecord } from './records.js';
import type { TSchema } from 'typebox';

/** The format tag of the files this version writes and reads. */
export const BACKUP_FORMAT = 'muster-backup/1';

/** The data key as a backup carries it: sealed under a key derived (HKDF-SHA256) from the unlock key or the backup key. */
export const BackupKeyWrap = Type.Object(
  {
    /** Which key opens it: the cluster's unlock key (autolock on), or the backup key printed when the backup was made. */
    under: Type.Union([Type.Literal('unlock-key'), Type.Literal('backup-key')]),
    kdf: Type.Literal('HKDF-SHA256'),
    /** The public ID of that key (token/unlock-key.ts): a wrong key is told apart from a damaged file. */
    keyId: Type.String({ pattern: '^[0-9a-f]{16}$' }),
    sealed: Sealed,
  },
  { additionalProperties: false },
);
export type BackupKeyWrap = Type.Static<typeof BackupKeyWrap>;

/** One record of the store. */
export const BackupRecord = Type.Object({ key: Type.String({ minLength: 1 }), value: Type.Unknown() }, { additionalProperties: false });
export type BackupRecord = Type.Static<typeof BackupRecord>;

/** A backup file. */
export const BackupFile = Type.Object(
  {
    format: Type.Literal(BACKUP_FORMAT),
    clusterId: Type.String({ minLength: 1 }),
    createdAt: Type.Integer({ minimum: 0 }),
    /** The store revision the records were read at. */
    revision: Type.Integer({ minimum: 0 }),
    /** Where the records came from (the store's description: never credentials). */
    source: Type.String(),
    /** The node ID of the manager that made it. */
    madeBy: Type.String(),
    dataKey: BackupKeyWrap,
    /** HMAC-SHA256 (hex) of the header and records under a key derived from the data key. */
    mac: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    records: Type.Array(BackupRecord),
  },
  { additionalProperties: false },
);
export type BackupFile = Type.Static<typeof BackupFile>;

const checkFile = Compile(BackupFile);

/** The fields the MAC covers: everything but the MAC and the key wrap (which GCM authenticates itself). */
type MacInput = Pick<BackupFile, 'format' | 'clusterId' | 'createdAt' | 'revision' | 'source' | 'madeBy' | 'records'>;

/** The MAC of a backup's content under `dataKey`. */
export function backupMac(dataKey: Buffer, file: MacInput): string {
  const macKey = Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), Buffer.from('muster backup: records mac', 'utf8'), 32));
  const { format, clusterId, createdAt, revision, source, madeBy, records } = file;
  return createHmac('sha256', macKey)
    .update(JSON.stringify([format, clusterId, createdAt, revision, source, madeBy, records]))
    .digest('hex');
}

/** The file's content for `dump` (the data key wrap and the MAC are the caller's). */
export function backupContent(dump: StoreDump, params: { createdAt: number; source: string; madeBy: string }): Omit<BackupFile, 'dataKey' | 'mac'> {
  const cluster = dump.records.find((r) => r.key === KEYS.cluster.key);
  if (cluster === undefined) throw new MusterError('STATE_CORRUPT', 'the store holds no cluster record: nothing to back up');
  const { clusterId } = decodeRecord(KEYS.cluster.schema, KEYS.cluster.key, cluster.value);
  return {
    format: BACKUP_FORMAT,
    clusterId,
    createdAt: params.createdAt,
    revision: dump.revision,
    source: params.source,
    madeBy: params.madeBy,
    records: dump.records,
  };
}

/** Reads a backup file's text; BACKUP_INVALID (naming the file) when it is not one this version reads. */
export function parseBackup(file: string, text: string): BackupFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new MusterError('BACKUP_INVALID', `${file} is not a muster backup (not JSON)`);
  }
  return checkBackup(file, value);
}

/** Checks a parsed backup against the format; BACKUP_INVALID (naming `what`) otherwise. */
export function checkBackup(what: string, value: unknown): BackupFile {
  const format = (value as { format?: unknown } | null)?.format;
  if (typeof format === 'string' && format !== BACKUP_FORMAT && format.startsWith('muster-backup/')) {
    throw new MusterError('BACKUP_INVALID', `${what} is a backup in format ${format}; this muster reads ${BACKUP_FORMAT}`, {
      hint: 'restore it with the muster version that made it',
    });
  }
  if (!checkFile.Check(value))
    throw new MusterError(
      'BACKUP_INVALID',
      `${what} is not a muster backup (${format === BACKUP_FORMAT ? 'its content does not match the format' : 'no muster-backup format tag'})`,
    );
  return value as BackupFile;
}

/** What a restore writes, checked: the records muster knows (each against its schema), and the keys it leaves out. */
export interface CheckedRecords {
  cluster: ClusterRecord;
  /** Records of known kinds, in the backup's order. */
  known: BackupRecord[];
  /** Keys of no kind this version knows (a newer muster's, or a backend's own): not restored. */
  skipped: string[];
}

const KINDS: (Ref<TSchema> | Space<TSchema>)[] = Object.values(KEYS) as (Ref<TSchema> | Space<TSchema>)[];
const REFS = KINDS.filter((k): k is Ref<TSchema> => 'key' in k);
const SPACES = KINDS.filter((k): k is Space<TSchema> => 'prefix' in k);

/** Checks a backup's records: every known record matches its schema, the cluster, CA and token records are there, and name the file's cluster; BACKUP_INVALID otherwise. */
export function checkBackupRecords(file: BackupFile): CheckedRecords {
  const known: BackupRecord[] = [];
  const skipped: string[] = [];
  const seen = new Set<string>();
  for (const record of file.records) {
    if (seen.has(record.key)) throw new MusterError('BACKUP_INVALID', `the backup holds ${record.key} twice`);
    seen.add(record.key);
    const schema =
      REFS.find((r) => r.key === record.key)?.schema ?? SPACES.find((s) => record.key.startsWith(s.prefix) && record.key.length > s.prefix.length)?.schema;
    if (schema === undefined) {
      skipped.push(record.key);
      continue;
    }
    try {
      decodeRecord(schema, record.key, record.value);
    } catch (error) {
      throw new MusterError('BACKUP_INVALID', `the backup's record ${record.key} is not valid: ${(error as Error).message}`, { cause: error });
    }
    known.push(record);
  }
  for (const required of [KEYS.cluster, KEYS.ca, KEYS.tokens]) {
    if (!seen.has(required.key)) throw new MusterError('BACKUP_INVALID', `the backup has no ${required.key} record: it is not a complete cluster`);
  }
  const cluster = known.find((r) => r.key === KEYS.cluster.key)!.value as ClusterRecord;
  if (cluster.clusterId !== file.clusterId)
    throw new MusterError('BACKUP_INVALID', `the backup says cluster ${file.clusterId} but holds cluster ${cluster.clusterId}`);
  return { cluster, known, skipped };
}
