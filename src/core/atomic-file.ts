/**
 * The one way muster puts a file on disk: write a temporary file next to the
 * target (created exclusively, never through a symlink), fsync it, set its
 * mode whatever the umask, rename it over the target and fsync the folder.
 * A crash leaves the old file or the new one, never half of either.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Flags for a fresh temporary file: created here, never an existing file or a symlink. */
const CREATE_EXCLUSIVE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Writes `data` to `path` and fsyncs it; the file must not exist yet. */
export async function writeNewFileSynced(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const handle = await open(path, CREATE_EXCLUSIVE, mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode); // umask-proof
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Fsyncs a folder, so renames and creations inside it survive a crash. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `data` to `path` atomically with `mode` (temp file, fsync, rename, fsync the folder). */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const temp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  await writeNewFileSynced(temp, data, mode);
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await syncDir(dirname(path));
}

/** Creates `dir` (and missing parents) and sets it to 0700 whatever the umask; refuses a symlink in its place. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await lstat(dir);
  if (info.isSymbolicLink() || !info.isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR', path: dir });
  await chmod(dir, 0o700);
}

/** True when `path` exists (without following a final symlink). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
