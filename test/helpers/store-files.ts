/** Reading a stopped manager's store from its data dir, as an operator (or a thief with the disk) could. */
import { dataDirLayout } from '../../src/config/paths.js';
import { readDataKey } from '../../src/config/manager-files.js';
import { SEAL_CONTEXT } from '../../src/manager/state/signer.js';
import { unseal } from '../../src/pki/seal.js';
import { KEYS } from '../../src/store/cluster-store.js';
import { LevelStore } from '../../src/store/level-store.js';
import type { CaRecord } from '../../src/store/records.js';

/** The CA record of a stopped manager on the embedded store. */
export async function readCaRecord(dataDir: string): Promise<CaRecord | undefined> {
  const store = await LevelStore.openDir(dataDirLayout(dataDir).dbDir, { create: false });
  try {
    return (await store.get(KEYS.ca))?.value;
  } finally {
    await store.close();
  }
}

/** The CA key of a stopped manager, unsealed with its data key. */
export async function readCaKey(dataDir: string): Promise<string> {
  const ca = await readCaRecord(dataDir);
  if (ca?.key === undefined) throw new Error('the store holds no CA key');
  return unseal(await readDataKey(dataDirLayout(dataDir)), ca.key, SEAL_CONTEXT.caKey).toString('utf8');
}
