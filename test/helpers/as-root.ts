/**
 * The few steps of the suite that need root (mounting a tmpfs, giving a file
 * to another user), for a user who is not: they run in a user namespace in
 * which this user is root and its subordinate IDs (/etc/subuid, mapped by
 * uidmap's newuidmap) are the other users, so the kernel's checks are real.
 * As root they run as they are. scripts/ensure-tools.sh checks, before any
 * test, that a user who is not root can make such a namespace.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { slow } from './slowdown.js';

/** Whether the tests run as root. */
export const IS_ROOT = process.getuid?.() === 0;

/**
 * The command prefix that runs a command as root: none for root, else a user
 * namespace where this user is 0 and its subordinate IDs are 1 and up (so
 * 65534 is another user there, as on the host).
 */
export const AS_ROOT: readonly string[] = IS_ROOT ? [] : ['unshare', '--user', '--map-root-user', '--map-auto'];

/** Runs `command ARGS` as root (see AS_ROOT) and returns its output. */
export function runAsRoot(command: string, args: string[]): string {
  const [first, ...rest] = [...AS_ROOT, command, ...args];
  return execFileSync(first!, rest, { encoding: 'utf8', timeout: slow(20_000) });
}

/** Gives `path` to `uid`:`uid` (as seen by commands run with AS_ROOT). */
export function giveTo(path: string, uid: number, options: { recursive?: boolean } = {}): void {
  if (IS_ROOT && options.recursive !== true) chownSync(path, uid, uid);
  else runAsRoot('chown', [...(options.recursive === true ? ['-R'] : []), `${uid}:${uid}`, path]);
}

/** Owner, group and mode bits of `path` as root sees them (in the namespace: its IDs are the ones /etc/passwd names). */
export function statAsRoot(path: string): [uid: number, gid: number, mode: number] {
  if (IS_ROOT) {
    const info = statSync(path);
    return [info.uid, info.gid, info.mode & 0o777];
  }
  const [uid, gid, mode] = runAsRoot('stat', ['-c', '%u %g %a', path]).trim().split(' ');
  return [Number(uid), Number(gid), Number.parseInt(mode!, 8)];
}

/** The text of `path`, read as root (a file in another user's folder). */
export function readAsRoot(path: string): string {
  return IS_ROOT ? readFileSync(path, 'utf8') : runAsRoot('cat', [path]);
}

/** The names in `dir`, read as root (another user's 0700 dir). */
export function listAsRoot(dir: string): string[] {
  if (IS_ROOT) return readdirSync(dir);
  return runAsRoot('ls', ['-A', dir])
    .split('\n')
    .filter((name) => name !== '');
}

/** A tmpfs mounted on `path`, and how to reach it. */
export interface Tmpfs {
  /** The prefix for commands that must see the tmpfs at `path`. */
  prefix: string[];
  /** Where this process reads and writes the tmpfs. */
  view: string;
  unmount(): void;
}

/**
 * Mounts a tmpfs with `options` (mount -o) on `path`. As root, for the whole
 * machine; otherwise in a mount namespace of a user namespace, held by a
 * process that ends with this one: commands join it with `prefix`, and this
 * process reaches it through /proc/PID/root.
 */
export async function mountTmpfs(path: string, options: string): Promise<Tmpfs> {
  if (IS_ROOT) {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', path]);
    return { prefix: [], view: path, unmount: () => execFileSync('umount', ['-l', path]) };
  }
  // `cat` holds the namespace until this process closes its standard input (or ends).
  const holder = spawn(
    'unshare',
    ['--user', '--map-root-user', '--mount', 'sh', '-c', 'mount -t tmpfs -o "$1" tmpfs "$2" && echo mounted && exec cat', 'sh', options, path],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no tmpfs on ${path} in a user namespace:\n${output}`)), slow(20_000));
    const seen = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      if (/mounted/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    holder.stdout.on('data', seen);
    holder.stderr.on('data', seen);
    holder.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`unshare exited ${code} before it mounted a tmpfs on ${path} (a user who is not root needs user namespaces):\n${output}`));
    });
  });
  const pid = String(holder.pid);
  return {
    prefix: ['nsenter', '--target', pid, '--user', '--mount', '--preserve-credentials'],
    view: `/proc/${pid}/root${path}`,
    unmount: () => {
      holder.stdin.end();
      holder.kill('SIGKILL');
    },
  };
}
