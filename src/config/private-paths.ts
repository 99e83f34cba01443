/**
 * What a data dir must look like before muster trusts it (DESIGN §6): its
 * folders 0700 and its secrets 0600, owned by the user muster runs as, and
 * no symbolic links where muster reads or writes. A data dir that another
 * user made, or loosened, or planted a link in, could let that user read the
 * node's key and the CA's data key, or make muster overwrite a file of their
 * choosing; muster refuses it and says which command fixes it.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { checkPrivate } from '../core/private-file.js';
import { MusterError } from '../core/errors.js';
import type { DataDirLayout } from './paths.js';

/** One path and how private it must be. */
interface Rule {
  path: string;
  kind: 'dir' | 'file';
}

/**
 * Before init or join write into `dataDir`: when it exists already, it must
 * be a folder of the user muster runs as, not a link (its mode is then set
 * to 0700). A folder another user made stays theirs to read and to fill.
 */
export async function checkDataDirOwner(layout: DataDirLayout, uid: number): Promise<void> {
  try {
    await checkPrivate(layout.dataDir, 'dir', uid);
  } catch (error) {
    if (error instanceof MusterError && /readable or writable/.test(error.message)) return; // tightened when muster writes into it
    throw error;
  }
}

/** Checks the whole data dir of a node (and of a manager: its store folder and every file in it). */
export async function checkDataDir(layout: DataDirLayout, uid: number): Promise<void> {
  const rules: Rule[] = [
    { path: layout.dataDir, kind: 'dir' },
    { path: layout.certificatesDir, kind: 'dir' },
    { path: layout.nodeKey, kind: 'file' },
    { path: layout.nodeJson, kind: 'file' },
    { path: layout.managerDir, kind: 'dir' },
    { path: layout.dataKey, kind: 'file' },
    { path: layout.storeJson, kind: 'file' },
    { path: layout.dbDir, kind: 'dir' },
  ];
  for (const rule of rules) await checkPrivate(rule.path, rule.kind, uid);
  // LevelDB's files hold the sealed CA key and every record: all private too.
  let dbFiles: string[] = [];
  try {
    dbFiles = await readdir(layout.dbDir);
  } catch {
    return;
  }
  for (const name of dbFiles) {
    try {
      await checkPrivate(join(layout.dbDir, name), 'file', uid);
    } catch (error) {
      if (error instanceof MusterError && /readable or writable/.test(error.message)) {
        throw new MusterError('DATA_DIR_INSECURE', `${join(layout.dbDir, name)} is readable or writable by other users`, {
          hint: `run: chmod -R go-rwx ${layout.dbDir}`,
        });
      }
      throw error;
    }
  }
}
