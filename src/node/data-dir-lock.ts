/**
 * One daemon per data dir. `init`, `join` and `run` hold <data-dir>/muster.lock
 * for as long as they run, and another one on the same folder (or a
 * `join --force` over it) is refused with DATA_DIR_LOCKED before it changes
 * anything: two processes renewing into one folder leave one node's
 * node.json beside the other's certificate.
 *
 * Node has no flock(2), so the lock is a pid file checked for liveness:
 * `{"pid":N,"start":"T"}`, T being field 22 of /proc/N/stat (when the
 * process started, in clock ticks since boot). A holder killed with SIGKILL
 * leaves a file that the next daemon finds stale (no process N, or a newer
 * one under the same pid, as after a reboot) and replaces. The file appears
 * whole (written aside, then hard-linked into place, which fails when one is
 * there), and a stale one is removed only while it is still the file that
 * was judged (same inode).
 */
import { randomBytes } from 'node:crypto';
import { link, lstat, mkdir, readFile, rmdir, unlink } from 'node:fs/promises';
import { dirname, relative } from 'node:path';
import { pathExists, writeNewFileSynced } from '../core/atomic-file.js';
import { MusterError } from '../core/errors.js';
import type { DataDirLayout } from '../config/paths.js';

/** A held lock. */
export interface DataDirLock {
  /** Removes the lock file (and a data dir that taking the lock created, when it is still empty). Idempotent. */
  release(): Promise<void>;
}

interface Holder {
  pid: number;
  start?: string;
}

/** When process `pid` started (field 22 of /proc/PID/stat); 'gone' when there is no such process; undefined without /proc. */
async function processStart(pid: number): Promise<string | 'gone' | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
    return (await pathExists('/proc/self/stat')) ? 'gone' : undefined;
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so fields are counted from the last ')'; state is field 3.
  return text.slice(text.lastIndexOf(')') + 2).split(' ')[22 - 3];
}

async function isAlive(holder: Holder): Promise<boolean> {
  const start = await processStart(holder.pid);
  if (start === 'gone') return false;
  if (start !== undefined && holder.start !== undefined) return start === holder.start;
  try {
    process.kill(holder.pid, 0); // without /proc: whether a process with that pid exists at all
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // it does, and is another user's
  }
}

/** The holder a lock file names (undefined for one that names none: not a muster's, so stale) and its inode; undefined when it is gone. */
async function readHolder(path: string): Promise<{ holder: Holder | undefined; ino: number } | undefined> {
  try {
    const [info, text] = await Promise.all([lstat(path), readFile(path, 'utf8')]);
    const value: unknown = JSON.parse(text);
    const { pid, start } = (typeof value === 'object' && value !== null ? value : {}) as { pid?: unknown; start?: unknown };
    const holder = typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 0 ? { pid, ...(typeof start === 'string' ? { start } : {}) } : undefined;
    return { holder, ino: info.ino };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (error instanceof SyntaxError) return { holder: undefined, ino: (await lstat(path).catch(() => undefined))?.ino ?? -1 };
    throw error;
  }
}

function busy(dataDir: string, pid: number | undefined): MusterError {
  return new MusterError('DATA_DIR_LOCKED', `${dataDir} is in use by another muster process${pid === undefined ? '' : ` (pid ${pid})`}`, {
    hint: `stop that process first${pid === undefined ? '' : ` (kill ${pid})`}; a second node on this machine needs its own --data-dir`,
  });
}

/** Takes the lock of a data dir (made 0700 if missing), or refuses with DATA_DIR_LOCKED while another live process holds it. */
export async function lockDataDir(layout: DataDirLayout): Promise<DataDirLock> {
  const { dataDir, lockFile: path } = layout;
  const created = await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const start = await processStart(process.pid);
  const own: Holder = { pid: process.pid, ...(start === undefined || start === 'gone' ? {} : { start }) };
  const temp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}`;
  let ino: number | undefined;
  try {
    await writeNewFileSynced(temp, `${JSON.stringify(own)}\n`, 0o600);
    for (let attempt = 0; attempt < 5 && ino === undefined; attempt++) {
      try {
        await link(temp, path);
        ino = (await lstat(temp)).ino;
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const found = await readHolder(path);
      if (found === undefined) continue; // released meanwhile
      if (found.holder !== undefined && (await isAlive(found.holder))) throw busy(dataDir, found.holder.pid);
      if ((await lstat(path).catch(() => undefined))?.ino === found.ino) await unlink(path).catch(() => undefined); // stale: its holder died
    }
    if (ino === undefined) throw busy(dataDir, undefined);
  } catch (error) {
    await removeCreated(dataDir, created);
    throw error;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      if ((await lstat(path).catch(() => undefined))?.ino === ino) await unlink(path).catch(() => undefined);
      await removeCreated(dataDir, created);
    },
  };
}

/** Removes the folders mkdir created for the lock (the data dir, up to `created`) while they are empty: a join that failed leaves nothing behind. */
async function removeCreated(dataDir: string, created: string | undefined): Promise<void> {
  if (created === undefined) return;
  for (let dir = dataDir; ; dir = dirname(dir)) {
    try {
      await rmdir(dir);
    } catch {
      return; // not empty: it holds a node now
    }
    if (relative(created, dir) === '' || dir === dirname(dir)) return;
  }
}
