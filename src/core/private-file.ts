/**
 * Whether one file or folder is private to the user muster runs as: not a
 * symbolic link, owned by that user, closed to group and others. The data
 * dir's rules (config/private-paths.ts) and the key store apply it.
 */
import { lstat } from 'node:fs/promises';
import { MusterError } from './errors.js';

const octal = (mode: number): string => (mode & 0o777).toString(8).padStart(4, '0');

/**
 * Refuses `path` when it is a symbolic link, owned by another user than
 * `uid` (when given), or open to group or others. Missing paths pass: what
 * a data dir does not hold yet cannot leak.
 */
export async function checkPrivate(path: string, kind: 'dir' | 'file', uid?: number): Promise<void> {
  let info;
  try {
    info = await lstat(path);
  } catch {
    return;
  }
  const code = kind === 'dir' ? 'DATA_DIR_INSECURE' : 'KEY_FILE_INSECURE';
  if (info.isSymbolicLink())
    throw new MusterError(code, `${path} is a symbolic link; muster does not follow links inside its data dir`, {
      hint: `replace it with the real ${kind === 'dir' ? 'folder' : 'file'}`,
    });
  if (kind === 'dir' ? !info.isDirectory() : !info.isFile()) throw new MusterError(code, `${path} is not a ${kind === 'dir' ? 'folder' : 'regular file'}`);
  if (uid !== undefined && info.uid !== uid) {
    throw new MusterError(code, `${path} belongs to user ${info.uid}, not to the user muster runs as (${uid})`, {
      hint: `run muster as that user, or take the data dir over: chown -R ${uid} ${path}`,
    });
  }
  if ((info.mode & 0o077) !== 0) {
    throw new MusterError(code, `${path} is readable or writable by other users (mode ${octal(info.mode)})`, {
      hint: `run: chmod ${kind === 'dir' ? '0700' : '0600'} ${path}`,
    });
  }
}
