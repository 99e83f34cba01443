/**
 * The managed store through a node's life (issue 27 items 2 and 10): a
 * worker promoted on a managed store runs its own etcd member (at the
 * addresses its join named) and serves, a demoted one drops it; under
 * autolock a restarted manager's member does not run, and its key is not on
 * disk in clear, until `muster unlock`; a root rotation moves every
 * member's trust, and every manager's store client, to the new root while
 * joins go on. Real processes
 * (muster, Debian's etcd) on 127.0.0.1 with ports the OS handed out.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { isMusterError } from '../../src/core/errors.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { jsonLines, runMuster, type ChildRun } from '../helpers/cli.js';
import { etcdctlAs as etcdctl, freePort, memberFlags } from '../helpers/etcd.js';
import { FAST_ENV, eventually, processScope } from '../helpers/processes.js';
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

async function foundManaged(
  dir: string,
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<Manager & { tokens: { worker: string; manager: string } }> {
  const member = await memberFlags();
  const run = start(['init', '--store', 'etcd', '--data-dir', dir, '--listen-addr', '127.0.0.1:0', ...member.flags, ...extra], env);
  const [, worker, address] = (await run.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/, slow(90_000))) as unknown as [string, string, string];
  const manager = (await runMuster(['join-token', '-q', 'manager', '--data-dir', dir])).stdout.trim();
  return { dir, run, address, member, tokens: { worker, manager } };
}

async function joinManager(dir: string, token: string, via: string, env: Record<string, string> = {}): Promise<Manager> {
  const member = await memberFlags();
  const run = start(['join', via, '--data-dir', dir, '--listen-addr', '127.0.0.1:0', '--advertise-addr', '127.0.0.1', ...member.flags], {
    MUSTER_TOKEN: token,
    ...env,
  });
  await run.waitFor(/This node joined cluster/, slow(90_000));
  const address = (await run.waitFor(/"advertise":"(127\.0\.0\.1:\d+)"/, slow(90_000)))[1]!;
  return { dir, run, address, member };
}

const csrs = (n: number): string[] => Array.from({ length: n }, () => createCsr({ privateKey: generateNodeKeySync().privateKey }));

describe('node promote and demote on a managed store', () => {
  it('a worker joined with --etcd-client-addr/--etcd-peer-addr and promoted runs its member there, as a voting member, and serves; demoted, its member leaves and manager/etcd goes', {
    timeout: slow(240_000),
  }, async () => {
    const f = await foundManaged(scratch.path('p-f'));
    const wDir = scratch.path('p-w');
    const port = await freePort();
    const member = await memberFlags();
    // A worker that could serve: where its API and its etcd member would listen.
    const w = start(['join', f.address, '--data-dir', wDir, '--advertise-addr', '127.0.0.1', '--listen-addr', `127.0.0.1:${port}`, ...member.flags], {
      MUSTER_TOKEN: f.tokens.worker,
    });
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
    expect(etcdctl(member.client, join(certs(wDir), 'root-ca.crt'), ownCred(wDir), ['get', '--prefix', '/muster/', '--keys-only', '--limit', '1']).status).toBe(
      0,
    );
    const nodes = await runMuster(['node', 'ls', '--format', 'json', '--data-dir', wDir]);
    expect(nodes.code, nodes.stderr).toBe(0);
    expect(jsonLines<{ id: string; managerStatus?: string }>(nodes.stdout).find((n) => n.id === wId)?.managerStatus).toBe('Reachable');

    const demoted = await runMuster(['node', 'demote', wId, '--data-dir', f.dir]);
    expect(demoted.code, demoted.stderr).toBe(0);
    await eventually('the demoted node to drop its member', async () => (!existsSync(join(wDir, 'manager', 'etcd')) ? true : undefined)).catch(
      (error: unknown) => {
        throw new Error(`${String(error)}\n${w.stderr().slice(-6000)}`);
      },
    );
    expect(
      memberList(f.member.client, f.dir).map((m) => m.name),
      f.run
        .stderr()
        .split('\n')
        .filter((l) => /store could not|removed the manager/.test(l))
        .join('\n'),
    ).toEqual([nodeJson(f.dir).nodeId]);
    await eventually('its etcd process to end', async () => (memberPid(wId) === '' ? true : undefined), slow(20_000));
    expect(nodeJson(wDir).role).toBe('worker');
    await w.stop('SIGTERM');
    await f.run.stop('SIGTERM');
  });
});

describe('autolock on a managed store', () => {
  it('a restarted manager waits locked with no member running and no member key on disk until muster unlock; after a SIGKILL the stale key file goes before it waits', {
    timeout: slow(240_000),
  }, async () => {
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
    expect(
      etcdctl(f.member.client, join(certs(dir), 'root-ca.crt'), { cert: join(dir, 'manager', 'etcd-tls', 'member.crt'), key: memberKeyFile(dir) }, [
        'get',
        '--prefix',
        '/muster/',
        '--keys-only',
        '--limit',
        '1',
      ]).status,
    ).toBe(0);

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

describe('a root rotation on three managers that run etcd', () => {
  it('muster ca --rotate completes while joins go on: no join fails for good, every member trusts and presents the new root, etcdctl with a new certificate works', {
    timeout: 420_000,
  }, async () => {
    // Nodes that joined through the API alone never renew: the rotation stops waiting for them once they count as down.
    const env = { MUSTER_NODE_DOWN_AFTER: '3s' };
    const f = await foundManaged(scratch.path('r-f'), [], env);
    const m2 = await joinManager(scratch.path('r-m2'), f.tokens.manager, f.address, env);
    const m3 = await joinManager(scratch.path('r-m3'), f.tokens.manager, m2.address, env);
    const managers = [f, m2, m3];
    const w = start(['join', f.address, '--data-dir', scratch.path('r-w')], { MUSTER_TOKEN: f.tokens.worker });
    await w.waitFor(/This node joined cluster/, 60_000);
    const oldRoot = rootOf(f.dir);
    // A manager's certificate from the old root: what the old root's key could still make after the rotation.
    const kept = scratch.path('r-kept');
    mkdirSync(kept);
    copyFileSync(join(certs(f.dir), 'node.crt'), join(kept, 'node.crt'));
    copyFileSync(join(certs(f.dir), 'node.key'), join(kept, 'node.key'));
    const oldCred = { cert: join(kept, 'node.crt'), key: join(kept, 'node.key') };

    const clients = managers.map((m) => new ApiClient({ managers: [m.address], tls: { rootPem: oldRoot }, timeoutMs: 20_000 }));
    let storeFailures = 0;
    let otherRetries = 0;
    let gaveUp = 0;
    let joins = 0;
    let lastOk = Date.now();
    let longestGapMs = 0;
    let stop = false;
    const failures: string[] = [];
    // The rotation's end gives the tokens the new root's digest: a join after it uses the token the managers show now.
    let token = f.tokens.worker;
    let tokenChanges = 0;
    const loop = async (lane: number): Promise<void> => {
      for (let i = lane; !stop; i += 3) {
        const csr = csrs(1)[0]!;
        let ok = false;
        for (let attempt = 0; attempt < 30 && !ok; attempt++) {
          try {
            await clients[(i + attempt) % 3]!.call('join', { body: { token, csr } });
            ok = true;
          } catch (error) {
            if (isMusterError(error, 'STORE_UNAVAILABLE')) storeFailures += 1;
            else if (isMusterError(error, 'TOKEN_REJECTED') && tokenChanges < 3) {
              const now = (await runMuster(['join-token', '-q', 'worker', '--data-dir', f.dir])).stdout.trim();
              if (now.startsWith('SWMTKN-') && now !== token) {
                tokenChanges += 1;
                token = now;
              }
              continue;
            } else if (isMusterError(error) && ['STORE_CONFLICT', 'MANAGER_UNREACHABLE'].includes(error.code)) otherRetries += 1;
            else {
              failures.push(String(error));
              break;
            }
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
        }
        if (!ok) {
          gaveUp += 1;
          continue;
        }
        joins += 1;
        const now = Date.now();
        longestGapMs = Math.max(longestGapMs, now - lastOk);
        lastOk = now;
      }
    };
    const loops = [0, 1, 2].map((lane) => loop(lane));
    const rotated = await runMuster(['ca', '--rotate', '--data-dir', f.dir], { env: { ...FAST_ENV, ...env } });
    stop = true;
    await Promise.all(loops);
    await Promise.all(clients.map((c) => c.close()));
    console.log(
      `rotation on a managed store: ${joins} joins, ${storeFailures} STORE_UNAVAILABLE retried, ${otherRetries} other retries, longest gap ${longestGapMs} ms`,
    );
    expect(rotated.code, `${rotated.stdout}\n${rotated.stderr}\n${managers.map((m) => m.run.stderr().slice(-3000)).join('\n---\n')}`).toBe(0);
    expect(failures).toEqual([]);
    expect(gaveUp).toBe(0);
    expect(joins).toBeGreaterThan(10);
    expect(longestGapMs).toBeLessThan(15_000);

    const newRoot = rootOf(f.dir);
    expect(newRoot).not.toBe(oldRoot);
    const root = new X509Certificate(newRoot);
    for (const m of managers) {
      await eventually(`${m.dir} to hold the new root`, async () => (rootOf(m.dir) === newRoot ? true : undefined), 60_000);
      await eventually(
        `${m.dir}'s certificate to be from the new root`,
        async () => (new X509Certificate(readFileSync(join(certs(m.dir), 'node.crt'))).verify(root.publicKey) ? true : undefined),
        60_000,
      ).catch((error: unknown) => {
        const leaf = new X509Certificate(readFileSync(join(certs(m.dir), 'node.crt')));
        throw new Error(
          `${String(error)}: ${leaf.issuer} ${leaf.validFrom} ${leaf.serialNumber}\n${m.run
            .stderr()
            .split('\n')
            .filter((l) => /renew|trust|rotat/.test(l))
            .join('\n')}`,
        );
      });
      await eventually(
        `${m.dir}'s member to trust the new root only`,
        async () => (readFileSync(join(m.dir, 'manager', 'etcd-tls', 'trust.pem'), 'utf8') === newRoot ? true : undefined),
        60_000,
      );
    }
    // etcd itself moved to the new root: each member (restarted one at a time) refuses the old root's certificate, and takes a new one.
    for (const m of managers) {
      const trustFile = join(certs(m.dir), 'root-ca.crt');
      const refused = await eventually(
        `${m.dir}'s member to refuse an old-root certificate`,
        async () => {
          const r = etcdctl(m.member.client, trustFile, oldCred, ['get', '--prefix', '/muster/', '--keys-only', '--limit', '1']);
          return r.status !== 0 ? r : undefined;
        },
        90_000,
      ).catch((error: unknown) => {
        throw new Error(
          `${String(error)}\n${m.run
            .stderr()
            .split('\n')
            .filter((l) => /trust|etcd member|turn/.test(l))
            .join('\n')}`,
        );
      });
      expect(refused.out).toMatch(/certificate|tls|handshake|deadline/i);
      const get = etcdctl(m.member.client, trustFile, ownCred(m.dir), ['get', '--prefix', '/muster/', '--keys-only', '--limit', '1']);
      expect(get.status, get.out).toBe(0);
    }
    const list = memberList(m3.member.client, m3.dir);
    expect(list.map((m) => m.name).sort()).toEqual(managers.map((m) => nodeJson(m.dir).nodeId).sort());
    // The store still works for every manager after its member restarted with the new trust: a join through each.
    for (const m of managers) {
      const client = new ApiClient({ managers: [m.address], tls: { rootPem: newRoot }, timeoutMs: 20_000 });
      const workerToken = (await runMuster(['join-token', '-q', 'worker', '--data-dir', f.dir])).stdout.trim();
      await eventually(`a join through ${m.address}`, async () => client.call('join', { body: { token: workerToken, csr: csrs(1)[0]! } }), 60_000).catch(
        (error: unknown) => {
          throw new Error(
            `${String(error)}\n${m.run
              .stderr()
              .split('\n')
              .filter((l) => /"level":(40|50)|trust|etcd member/.test(l))
              .slice(-30)
              .join('\n')}`,
          );
        },
      );
      await client.close();
    }
    // The worker renewed onto the new root too.
    await eventually('the worker to hold the new root', async () => (rootOf(scratch.path('r-w')) === newRoot ? true : undefined), 60_000);
  });
});

describe('a manager join that does not finish', () => {
  it('a learner left by a manager join whose answering manager died before recording the node goes when the next manager join needs its place; that join succeeds', {
    timeout: 300_000,
  }, async () => {
    const dir = scratch.path('d-f');
    const f = await foundManaged(dir, [], { MUSTER_FAILPOINTS: 'manager-join:member-added' });
    const lost = await memberFlags();
    const gone = start(['join', f.address, '--data-dir', scratch.path('d-a'), '--listen-addr', '127.0.0.1:0', '--advertise-addr', '127.0.0.1', ...lost.flags], {
      MUSTER_TOKEN: f.tokens.manager,
    });
    await f.run.exit; // the failpoint: SIGKILLed after etcd took the learner, before the node was recorded
    await gone.stop('SIGKILL');
    const again = start(['run', '--data-dir', dir, '--listen-addr', f.address]);
    await again.waitFor(/manager listening/, 90_000);
    const learner = memberList(f.member.client, dir).find((m) => m.peerURLs.includes(`https://${lost.peer}`));
    expect(learner?.isLearner, 'the unfinished join left a learner').toBe(true);
    expect(learner?.name ?? '', 'whose member never started').toBe('');
    const m2 = await joinManager(scratch.path('d-m2'), f.tokens.manager, f.address);
    const list = memberList(f.member.client, dir);
    expect(
      list.some((m) => m.peerURLs.includes(`https://${lost.peer}`)),
      'the learner left behind is gone',
    ).toBe(false);
    expect(list.map((m) => m.name).sort()).toEqual([nodeJson(dir).nodeId, nodeJson(m2.dir).nodeId].sort());
    expect(again.stderr()).toMatch(/removed an etcd learner whose member never started/);
  });
});
