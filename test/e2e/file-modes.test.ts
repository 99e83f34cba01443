/**
 * File modes, ownership and links in a data dir (issue 16, item 7), with the
 * real CLI: everything muster creates is 0700/0600 whatever the umask (the
 * certificates, public, 0644), a loosened or foreign data dir is refused with
 * the fix, and a link planted inside the data dir is never followed.
 * (Giving a dir to another user needs root: as another user, that and the
 * muster that must see it foreign run in a user namespace; test/helpers/as-root.ts.)
 */
import { chmodSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AS_ROOT, IS_ROOT, giveTo, listAsRoot } from '../helpers/as-root.js';
import { runMuster, spawnMuster, type ChildRun } from '../helpers/cli.js';
import { scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-modes-');
const running: ChildRun[] = [];
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop('SIGKILL')));
  if (!IS_ROOT) giveTo(scratch.dir, 0, { recursive: true }); // back from "another user" to this one, who can then remove it
  scratch.cleanup();
});

/** Runs muster under a shell with the given umask, as an operator's login shell would start it. */
function withUmask(umask: string, argv: string[]): ChildRun {
  // sh -c 'umask U; exec "$0" "$@"' node main.js ARGV: the prefix runs before muster's own command line.
  const run = spawnMuster(argv, { prefix: ['sh', '-c', `umask ${umask}; exec "$0" "$@"`] });
  running.push(run);
  return run;
}

/** Every path under `dir` with its mode. */
function modes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const info = lstatSync(path);
      out[path.slice(dir.length + 1)] = (info.mode & 0o777).toString(8);
      if (info.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return out;
}

async function initAndStop(dir: string, umask = '077'): Promise<string> {
  const m = withUmask(umask, ['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
  const [, address] = await m.waitFor(/muster join --token \S+ (\S+)/);
  await m.stop();
  return address!;
}

describe('what muster creates', () => {
  it.each(['022', '000'])('under umask %s: folders 0700, keys and LevelDB files 0600, certificates 0644', { timeout: slow(30_000) }, async (umask) => {
    const dir = scratch.path(`umask-${umask}`);
    await initAndStop(dir, umask);
    const all = modes(dir);
    for (const [path, mode] of Object.entries(all)) {
      if (lstatSync(join(dir, path)).isDirectory()) expect(mode, path).toBe('700');
      else if (/\.crt$/.test(path)) expect(mode, path).toBe('644');
      else expect(mode, path).toBe('600');
    }
    expect(Object.keys(all).some((p) => p.startsWith('manager/db/'))).toBe(true);
    expect((lstatSync(dir).mode & 0o777).toString(8)).toBe('700');
  });

  it('create-api-certificate --out under umask 000 is 0700 with a 0600 key', { timeout: slow(30_000) }, async () => {
    const dir = scratch.path('api-m');
    const m = withUmask('077', ['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    await m.waitFor(/muster join --token/);
    const out = scratch.path('alice');
    const user = withUmask('000', ['ca', 'create-api-certificate', 'alice', '--out', out, '--data-dir', dir]);
    expect(await user.exit, user.stderr()).toBe(0);
    expect((lstatSync(out).mode & 0o777).toString(8)).toBe('700');
    expect((lstatSync(join(out, 'key.pem')).mode & 0o777).toString(8)).toBe('600');
    await m.stop();
  });
});

describe('what muster refuses', () => {
  it.each([
    [
      'manager/db loosened to 0755',
      (dir: string) => chmodSync(join(dir, 'manager', 'db'), 0o755),
      /manager\/db is readable or writable by other users \(mode 0755\)\nhint: run: chmod 0700 /,
    ],
    [
      'a LevelDB file at 0644',
      (dir: string) => chmodSync(join(dir, 'manager', 'db', 'CURRENT'), 0o644),
      /CURRENT is readable or writable by other users\nhint: run: chmod -R go-rwx /,
    ],
    [
      'the data dir owned by another user',
      (dir: string) => giveTo(dir, 65534),
      /belongs to user 65534, not to the user muster runs as \(0\)\nhint: run muster as that user, or take the data dir over: chown -R 0 /,
    ],
    [
      'node.key replaced by a link',
      (dir: string) => {
        const key = join(dir, 'certificates', 'node.key');
        writeFileSync(scratch.path('elsewhere.key'), readFileSync(key), { mode: 0o600 });
        rmSync(key);
        symlinkSync(scratch.path('elsewhere.key'), key);
      },
      /node\.key is a symbolic link; muster does not follow links inside its data dir/,
    ],
  ])('run refuses %s, and says how to fix it', { timeout: slow(30_000) }, async (name, damage, message) => {
    const dir = scratch.path(`refuse-${name.replace(/\W+/g, '-')}`);
    await initAndStop(dir);
    damage(dir);
    // As root for the dir given to another user: the owner muster must tell apart from itself.
    const r = await runMuster(['run', '--data-dir', dir, '--listen-addr', '127.0.0.1:0'], { prefix: [...AS_ROOT] });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
  });

  it('init and join refuse a data dir another user made, or a link in its place, before writing anything; a loose one of their own is tightened', {
    timeout: slow(30_000),
  }, async () => {
    const foreign = scratch.path('foreign');
    mkdirSync(foreign, { mode: 0o777 });
    giveTo(foreign, 65534);
    const init = await runMuster(['init', '--data-dir', foreign, '--listen-addr', '127.0.0.1:0'], { prefix: [...AS_ROOT] });
    expect(init.code).toBe(1);
    expect(init.stderr).toMatch(/foreign belongs to user 65534, not to the user muster runs as \(0\)\nhint: /);
    const join = await runMuster(['join', '127.0.0.1:1', '--data-dir', foreign], {
      env: { MUSTER_TOKEN: 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx' },
      prefix: [...AS_ROOT],
    });
    expect(join.code).toBe(1);
    expect(join.stderr).toMatch(/belongs to user 65534/);
    expect(listAsRoot(foreign)).toEqual([]); // another user's 0700 dir: only root may look in

    const linked = scratch.path('linked');
    symlinkSync(scratch.path('elsewhere'), linked);
    const viaLink = await runMuster(['init', '--data-dir', linked, '--listen-addr', '127.0.0.1:0']);
    expect(viaLink.code).toBe(1);
    expect(viaLink.stderr).toMatch(/linked is a symbolic link/);

    const loose = scratch.path('loose');
    mkdirSync(loose, { mode: 0o755 });
    await initAndStop(loose);
    expect((lstatSync(loose).mode & 0o777).toString(8)).toBe('700');
  });

  it('a link planted where the next key is written is replaced, not followed', { timeout: slow(30_000) }, async () => {
    const dir = scratch.path('planted');
    const address = await initAndStop(dir);
    const victim = scratch.write('victim', 'precious\n');
    symlinkSync(victim, join(dir, 'certificates', 'node.key.next'));
    const m = spawnMuster(['run', '--data-dir', dir, '--listen-addr', address]);
    running.push(m);
    await m.waitFor(/manager listening on/);
    m.child.kill('SIGHUP'); // renew now: the key store writes node.key.next
    await m.waitFor(/renewed until/);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(join(dir, 'certificates', 'node.key')).isSymbolicLink()).toBe(false);
    await m.stop();
  });
});
