/**
 * A full disk under a manager (issue 16, item 5), on a real tmpfs: while the
 * disk is full, joins are refused with 503 STORE_UNAVAILABLE (retryable),
 * never 500 and never acknowledged without being durable; once space is
 * freed the store reopens, checks itself and takes writes again; after a
 * restart every join that was acknowledged is still there. Five runs.
 * (Mounting a tmpfs needs root: as another user, the tmpfs and the managers
 * live in a user namespace of their own; test/helpers/as-root.ts.)
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { isMusterError } from '../../src/core/errors.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { mountTmpfs, type Tmpfs } from '../helpers/as-root.js';
import { spawnMuster, type ChildRun } from '../helpers/cli.js';
import { scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-diskfull-');
const mounts: Tmpfs[] = [];
const running: ChildRun[] = [];
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop('SIGKILL')));
  for (const mount of mounts) mount.unmount();
  scratch.cleanup();
});

/** Fills the file system of `dir` to the last byte. */
function fill(dir: string): string {
  const file = join(dir, 'filler');
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 7);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  }
  try {
    for (;;) writeSync(fd, chunk.subarray(0, 512)); // the last partial block too
  } catch {
    // full
  } finally {
    closeSync(fd);
  }
  return file;
}

const csr = (): string => createCsr({ privateKey: generateNodeKeySync().privateKey });

describe('a full disk under the manager', () => {
  it.each([1, 2, 3, 4, 5])('run %i: joins are refused with 503 while it is full, and no acknowledged join is lost', { timeout: slow(60_000) }, async () => {
    const mount = scratch.path(`fs-${Math.random().toString(36).slice(2)}`);
    mkdirSync(mount);
    const tmpfs = await mountTmpfs(mount, 'size=16m,mode=0700');
    mounts.push(tmpfs);
    const dir = join(mount, 'm'); // as the managers see it
    const manager = spawnMuster(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0'], { prefix: tmpfs.prefix });
    running.push(manager);
    const [, token, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (\S+)/)) as unknown as [string, string, string];
    const certs = join(tmpfs.view, 'm', 'certificates');
    const rootPem = readFileSync(join(certs, 'root-ca.crt'), 'utf8');
    const client = new ApiClient({ managers: [address], tls: { rootPem } });
    const acknowledged: string[] = [];
    const statuses: string[] = [];
    const attempt = async (): Promise<boolean> => {
      try {
        acknowledged.push((await client.call('join', { body: { token, csr: csr() } })).nodeId);
        return true;
      } catch (error) {
        if (!isMusterError(error)) throw error;
        statuses.push(`${error.statusCode} ${error.code}`);
        return false;
      }
    };
    for (let i = 0; i < 5; i++) expect(await attempt()).toBe(true);

    const filler = fill(tmpfs.view);
    for (let i = 0; i < 10; i++) await attempt();
    expect(statuses.length).toBeGreaterThan(0); // the full disk was felt
    expect(statuses.every((s) => s === '503 STORE_UNAVAILABLE')).toBe(true);

    rmSync(filler);
    let joined = 0;
    for (let tries = 0; joined < 20 && tries < 400; tries++) {
      if (await attempt()) joined += 1;
      else await new Promise((resolve) => setTimeout(resolve, 50)); // the store is reopening
    }
    expect(joined).toBe(20);
    await client.close();
    expect(await manager.stop()).toBe(0);

    const restarted = spawnMuster(['run', '--data-dir', dir, '--listen-addr', address], { prefix: tmpfs.prefix });
    running.push(restarted);
    await restarted.waitFor(/manager listening on/);
    const admin = new ApiClient({
      managers: [address],
      tls: { rootPem, certPem: readFileSync(join(certs, 'node.crt'), 'utf8'), keyPem: readFileSync(join(certs, 'node.key'), 'utf8') },
    });
    try {
      const listed = new Set((await admin.call('listNodes', { query: { limit: '1000' } })).nodes.map((n) => n.id));
      const lost = acknowledged.filter((id) => !listed.has(id));
      expect(lost).toEqual([]);
    } finally {
      await admin.close();
    }
    await restarted.stop();
  });
});
