/**
 * The managed store through a node's life (issue 27 items 2 and 10): a
 * worker promoted on a managed store runs its own etcd member (at the
 * addresses its join named) and serves, a demoted one drops it; under
 * autolock a restarted manager's member does not run, and its key is not on
 * disk in clear, until `muster unlock`. (A root rotation's move of every
 * member's trust to the new root is not done yet: issue 27's note.) Real processes
 * (muster, Debian's etcd) on 127.0.0.1 with ports the OS handed out.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { isMusterError } from '../../src/core/errors.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { jsonLines, runMuster, type ChildRun } from '../helpers/cli.js';
import { etcdctlAs as etcdctl, freePort, memberFlags } from '../helpers/etcd.js';
import { eventually, processScope } from '../helpers/processes.js';
import { scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-managed-life-');
afterAll(() => scratch.cleanup());
const { start } = processScope();

const certs = (dir: string) => join(dir, 'certificates');
const rootOf = (dir: string): string => readFileSync(join(certs(dir), 'root-ca.crt'), 'utf8');
const nodeJson = (dir: string): { nodeId: string; role: string; managers: string[] } => JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8'));
const ownCred = (dir: string) => ({ cert: join(certs(dir), 'node.crt'), key: join(certs(dir), 'node.key') });
const memberKeyFile = (dir: string) => join(dir, 'manager', 'etcd-tls', 'member.key');

/** The members etcd lists, asked through `endpoint` with a manager's credentials. */
function memberList(endpoint: string, dir: string): { name: string; isLearner?: boolean; peerURLs: string[]; clientURLs?: string[] }[] {
  const list = etcdctl(endpoint, join(certs(dir), 'root-ca.crt'), ownCred(dir), ['member', 'list', '-w', 'json']);
  if (list.status !== 0) throw new Error(list.out);
  return (JSON.parse(list.out) as { members: { name: string; isLearner?: boolean; peerURLs: string[]; clientURLs?: string[] }[] }).members;
}

/** The PID of the etcd member named `nodeId`, if one runs. */
function memberPid(nodeId: string): string {
  return spawnSync('pgrep', ['-f', `etcd .*--name ${nodeId}`], { encoding: 'utf8' }).stdout.trim();
}

interface Manager {
  dir: string;
  run: ChildRun;
  address: string;
  member: { client: string; peer: string };
}

async function foundManaged(dir: string, extra: string[] = [], env: Record<string, string> = {}): Promise<Manager & { tokens: { worker: string; manager: string } }> {
  const member = await memberFlags();
  const run = start(['init', '--store', 'etcd', '--data-dir', dir, '--listen-addr', '127.0.0.1:0', ...member.flags, ...extra], env);
  const [, worker, address] = (await run.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/, slow(90_000))) as unknown as [string, string, string];
  const manager = (await runMuster(['join-token', '-q', 'manager', '--data-dir', dir])).stdout.trim();
  return { dir, run, address, member, tokens: { worker, manager } };
}

async function joinManager(dir: string, token: string, via: string, env: Record<string, string> = {}): Promise<Manager> {
  const member = await memberFlags();
  const run = start(['join', via, '--data-dir', dir, '--listen-addr', '127.0.0.1:0', '--advertise-addr', '127.0.0.1', ...member.flags], { MUSTER_TOKEN: token, ...env });
  await run.waitFor(/This node joined cluster/, slow(90_000));
  const address = (await run.waitFor(/"advertise":"(127\.0\.0\.1:\d+)"/, slow(90_000)))[1]!;
  return { dir, run, address, member };
}

const csrs = (n: number): string[] => Array.from({ length: n }, () => createCsr({ privateKey: generateNodeKeySync().privateKey }));

describe('node promote and demote on a managed store', () => {
  it('a worker joined with --etcd-client-addr/--etcd-peer-addr and promoted runs its member there, as a voting member, and serves; demoted, its member leaves and manager/etcd goes', { timeout: slow(240_000) }, async () => {
    const f = await foundManaged(scratch.path('p-f'));
    const wDir = scratch.path('p-w');
    const port = await freePort();
    const member = await memberFlags();
    // A worker that could serve: where its API and its etcd member would listen.
    const w = start(['join', f.address, '--data-dir', wDir, '--advertise-addr', '127.0.0.1', '--listen-addr', `127.0.0.1:${port}`, ...member.flags], { MUSTER_TOKEN: f.tokens.worker });
    await w.waitFor(/This node joined cluster/, slow(60_000));
    const wId = nodeJson(wDir).nodeId;
    expect(nodeJson(wDir).role).toBe('worker');
    expect(existsSync(join(wDir, 'manager'))).toBe(false);

    const promoted = await runMuster(['node', 'promote', wId, '--data-dir', f.dir]);
    expect(promoted.code, promoted.stderr).toBe(0);
    await w.waitFor(/manager listening on/, slow(120_000)).catch((error: unknown) => {
      throw new Error(`${String(error)}\n${w.stderr().slice(-6000)}`);
    });
    await w.waitFor(/voting member now|is a voting member/, slow(60_000));
    expect(nodeJson(wDir).role).toBe('manager');
    // etcd lists it at the addresses its join named, as a voting member, healthy.
    const members = await eventually('the promoted member to be a voting member', async () => {
      const list = memberList(f.member.client, f.dir);
      return list.some((m) => m.name === wId && m.isLearner !== true) ? list : undefined;
    });
    const own = members.find((m) => m.name === wId)!;
    expect(own.peerURLs).toEqual([`https://${member.peer}`]);
    expect(own.clientURLs).toEqual([`https://${member.client}`]);
    expect(memberPid(wId)).not.toBe('');
    expect(statSync(join(wDir, 'manager', 'etcd')).mode & 0o777).toBe(0o700);
    // It serves: its own certificate opens the store at its own member, and its API answers.
    expect(etcdctl(member.client, join(certs(wDir), 'root-ca.crt'), ownCred(wDir), ['get', '--prefix', '/muster/', '--keys-only', '--limit', '1']).status).toBe(0);
    const nodes = await runMuster(['node', 'ls', '--format', 'json', '--data-dir', wDir]);
    expect(nodes.code, nodes.stderr).toBe(0);
    expect(jsonLines<{ id: string; managerStatus?: string }>(nodes.stdout).find((n) => n.id === wId)?.managerStatus).toBe('Reachable');

    const demoted = await runMuster(['node', 'demote', wId, '--data-dir', f.dir]);
    expect(demoted.code, demoted.stderr).toBe(0);
    await eventually('the demoted node to drop its member', async () => (!existsSync(join(wDir, 'manager', 'etcd')) ? true : undefined)).catch((error: unknown) => {
      throw new Error(`${String(error)}\n${w.stderr().slice(-6000)}`);
    });
    expect(memberList(f.member.client, f.dir).map((m) => m.name), f.run.stderr().split('\n').filter((l) => /store could not|removed the manager/.test(l)).join('\n')).toEqual([nodeJson(f.dir).nodeId]);
    await eventually('its etcd process to end', async () => (memberPid(wId) === '' ? true : undefined), slow(20_000));
    expect(nodeJson(wDir).role).toBe('worker');
    await w.stop('SIGTERM');
    await f.run.stop('SIGTERM');
  });
});

describe('autolock on a managed store', () => {
  it('a restarted manager waits locked with no member running and no member key on disk until muster unlock; after a SIGKILL the stale key file goes before it waits', { timeout: slow(240_000) }, async () => {
    const dir = scratch.path('a-f');
    const f = await foundManaged(dir, ['--autolock']);
    const unlockKey = (await f.run.waitFor(/^ {4}(SWMKEY-1-\S+)$/m, slow(30_000)))[1]!;
    const id = nodeJson(dir).nodeId;
    expect(memberPid(id)).not.toBe('');
    expect(statSync(memberKeyFile(dir)).mode & 0o777).toBe(0o600);
    expect(await f.run.stop('SIGTERM')).toBe(0);
    expect(existsSync(memberKeyFile(dir))).toBe(false);

    const locked = start(['run', '--data-dir', dir, '--listen-addr', f.address]);
    await locked.waitFor(/this manager is locked/, slow(60_000));
    expect(memberPid(id)).toBe('');
    expect(existsSync(join(dir, 'manager', 'etcd-tls'))).toBe(false);
    expect(readFileSync(join(certs(dir), 'node.key'), 'utf8')).not.toContain('PRIVATE KEY');
    const unlocked = await runMuster(['unlock', '--data-dir', dir], { env: { MUSTER_UNLOCK_KEY: unlockKey } });
    expect(unlocked.code, unlocked.stderr).toBe(0);
    await locked.waitFor(/manager listening on/, slow(90_000));
    expect(memberPid(id)).not.toBe('');
    expect(statSync(memberKeyFile(dir)).mode & 0o777).toBe(0o600);
    expect(etcdctl(f.member.client, join(certs(dir), 'root-ca.crt'), { cert: join(dir, 'manager', 'etcd-tls', 'member.crt'), key: memberKeyFile(dir) }, ['get', '--prefix', '/muster/', '--keys-only', '--limit', '1']).status).toBe(0);

    // SIGKILL: the member dies with its manager, and its TLS files (the key in clear) stay behind.
    const pid = memberPid(id);
    await locked.stop('SIGKILL');
    await eventually('the member to die with its manager', async () => (spawnSync('kill', ['-0', pid]).status !== 0 ? true : undefined), slow(20_000));
    expect(readFileSync(memberKeyFile(dir), 'utf8')).toContain('PRIVATE KEY');
    const again = start(['run', '--data-dir', dir, '--listen-addr', f.address]);
    await again.waitFor(/this manager is locked/, slow(60_000));
    expect(existsSync(join(dir, 'manager', 'etcd-tls'))).toBe(false);
    expect(memberPid(id)).toBe('');
    expect((await runMuster(['unlock', '--data-dir', dir], { env: { MUSTER_UNLOCK_KEY: unlockKey } })).code).toBe(0);
    await again.waitFor(/manager listening on/, slow(90_000));
    expect(memberPid(id)).not.toBe('');
    await again.stop('SIGTERM');
  });
});
