/**
 * HA with nothing else to run (issue 27): managers founded with
 * `init --store etcd` and joined with the manager token run their own etcd
 * members (Debian's etcd-server, real processes on 127.0.0.1, ports the OS
 * handed out), each with its own certificate from the cluster CA. etcd
 * itself admits only the serving managers' certificates; a join storm goes
 * on through the leader's SIGKILL; the quorum rules refuse a demotion that
 * would lose it; `init --force-new-cluster` recovers a lost quorum.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { isMusterError } from '../../src/core/errors.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { runMuster, type ChildRun } from '../helpers/cli.js';
import { etcdctlAs as etcdctl, memberFlags } from '../helpers/etcd.js';
import { eventually, nodesFrom, processScope } from '../helpers/processes.js';
import { scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';
import { story } from '../helpers/story.js';

const scratch = scratchDir('muster-managed-');
afterAll(() => scratch.cleanup());
const { start } = processScope();

const certs = (dir: string) => join(dir, 'certificates');
const rootOf = (dir: string): string => readFileSync(join(certs(dir), 'root-ca.crt'), 'utf8');
const nodeJson = (dir: string): { nodeId: string; role: string; managers: string[] } => JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8'));

/** A copy of a node's certificate and key (what an attacker who kept its files holds). */
function keepCredentials(dir: string, name: string): { cert: string; key: string } {
  const out = scratch.path(`kept-${name}`);
  mkdirSync(out, { recursive: true });
  copyFileSync(join(certs(dir), 'node.crt'), join(out, 'node.crt'));
  copyFileSync(join(certs(dir), 'node.key'), join(out, 'node.key'));
  return { cert: join(out, 'node.crt'), key: join(out, 'node.key') };
}

interface Manager {
  dir: string;
  run: ChildRun;
  address: string;
  member: { client: string; peer: string };
}

async function foundManaged(dir: string): Promise<Manager & { tokens: { worker: string; manager: string } }> {
  const member = await memberFlags();
  const run = start(['init', '--store', 'etcd', '--data-dir', dir, '--listen-addr', '127.0.0.1:0', ...member.flags]);
  const [, worker, address] = (await run.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/, slow(90_000))) as unknown as [string, string, string];
  const manager = (await runMuster(['join-token', '-q', 'manager', '--data-dir', dir])).stdout.trim();
  return { dir, run, address, member, tokens: { worker, manager } };
}

async function joinManager(dir: string, token: string, via: string): Promise<Manager> {
  const member = await memberFlags();
  const run = start(['join', via, '--data-dir', dir, '--listen-addr', '127.0.0.1:0', '--advertise-addr', '127.0.0.1', ...member.flags], {
    MUSTER_TOKEN: token,
  });
  await run.waitFor(/This node joined cluster/, slow(90_000));
  const address = (await run.waitFor(/"advertise":"(127\.0\.0\.1:\d+)"/, slow(90_000)))[1]!;
  return { dir, run, address, member };
}

async function joinWorker(dir: string, token: string, via: string): Promise<ChildRun> {
  const run = start(['join', via, '--data-dir', dir], { MUSTER_TOKEN: token });
  await run.waitFor(/This node joined cluster/, slow(60_000));
  return run;
}

/** Restarts a stopped manager on its data dir and waits until it serves. */
async function restart(manager: Manager): Promise<void> {
  // On the address it had (its nodes know it), as a manager with a fixed port comes back.
  manager.run = start(['run', '--data-dir', manager.dir, '--listen-addr', manager.address]);
  await manager.run.waitFor(/manager listening on/, slow(90_000));
}

const csrs = (n: number): string[] => Array.from({ length: n }, () => createCsr({ privateKey: generateNodeKeySync().privateKey }));

describe('three managers that run etcd themselves', () => {
  const { step } = story();
  const dirs = {
    f: scratch.path('f'),
    m2: scratch.path('m2'),
    m3: scratch.path('m3'),
    m4: scratch.path('m4'),
    m5: scratch.path('m5'),
    w1: scratch.path('w1'),
    api: scratch.path('api'),
  };
  let f: Awaited<ReturnType<typeof foundManaged>>;
  let m2: Manager;
  let m3: Manager;
  let root: string;
  let rootFile: string;
  let worker: ChildRun;

  step(
    'init --store etcd and two manager-token joins, nothing else configured: three voting members, TLS only, data 0700, certificates naming loopback',
    {
      timeout: slow(240_000),
    },
    async () => {
      f = await foundManaged(dirs.f);
      m2 = await joinManager(dirs.m2, f.tokens.manager, f.address);
      m3 = await joinManager(dirs.m3, f.tokens.manager, m2.address);
      rootFile = join(certs(dirs.f), 'root-ca.crt');
      root = rootOf(dirs.f);
      worker = await joinWorker(dirs.w1, f.tokens.worker, m3.address);
      const own = { cert: join(certs(dirs.f), 'node.crt'), key: join(certs(dirs.f), 'node.key') };
      const list = etcdctl(f.member.client, rootFile, own, ['member', 'list', '-w', 'json']);
      expect(list.status, list.out).toBe(0);
      const members = (JSON.parse(list.out) as { members: { name: string; isLearner?: boolean; peerURLs: string[] }[] }).members;
      expect(members.map((m) => m.name).sort()).toEqual([nodeJson(dirs.f).nodeId, nodeJson(dirs.m2).nodeId, nodeJson(dirs.m3).nodeId].sort());
      expect(members.every((m) => m.isLearner !== true && m.peerURLs.every((u) => u.startsWith('https://')))).toBe(true);
      for (const dir of [dirs.f, dirs.m2, dirs.m3]) {
        expect(statSync(join(dir, 'manager', 'etcd')).mode & 0o777).toBe(0o700);
        expect(new X509Certificate(readFileSync(join(certs(dir), 'node.crt'))).subjectAltName).toContain('IP Address:127.0.0.1');
        const store = JSON.parse(readFileSync(join(dir, 'manager', 'store.json'), 'utf8')) as Record<string, unknown>;
        expect(store.kind).toBe('etcd-managed');
        expect(JSON.stringify(store)).not.toMatch(/PRIVATE KEY|password/i); // no credential of its own: the node's certificate opens the store
      }
      // No plain-HTTP client port: a client without TLS gets nothing. etcdctl itself only says "context deadline exceeded", as it
      // does for a closed port or a frozen member; its --debug log tells them apart: the member took the connection and closed it.
      const plain = spawnSync(
        'etcdctl',
        ['--debug', '--endpoints', `http://${m2.member.client}`, '--dial-timeout', '2s', '--command-timeout', '3s', 'get', 'x'],
        {
          encoding: 'utf8',
          env: { ...process.env, ETCDCTL_API: '3' },
          timeout: slow(20_000),
        },
      );
      const plainOut = `${plain.stdout}${plain.stderr}`;
      expect(plain.status, plainOut).not.toBe(0);
      expect(plainOut).toMatch(/transport is closing/);
      expect(plainOut).not.toMatch(/connection refused/);
      const overTls = etcdctl(m2.member.client, rootFile, { cert: join(certs(dirs.m2), 'node.crt'), key: join(certs(dirs.m2), 'node.key') }, ['get', 'x']);
      expect(overTls.status, overTls.out).toBe(0); // the same port over TLS with a serving manager's certificate answers
      const status = await runMuster(['status', '--data-dir', dirs.m2]);
      expect(status.stdout).toMatch(new RegExp(`Store: +managed: etcd member on ${m2.member.client.replace(/\./g, '\\.')}.*the member answers`));
      const nodes = await nodesFrom(dirs.m3);
      expect(
        nodes
          .filter((n) => n.role === 'manager')
          .map((n) => n.managerStatus)
          .sort(),
      ).toEqual(['Leader', 'Reachable', 'Reachable']);
    },
  );

  step(
    'the founder reaches the members that joined after it: store.json lists them, and with its own member frozen (SIGSTOP) it still serves joins through theirs',
    {
      timeout: slow(120_000),
    },
    async () => {
      const storeJson = (): { endpoints: string[] } => JSON.parse(readFileSync(join(dirs.f, 'manager', 'store.json'), 'utf8')) as { endpoints: string[] };
      await eventually(
        'the founder to list the members that joined after it',
        async () => ([m2.member.client, m3.member.client].every((e) => storeJson().endpoints.includes(e)) ? true : undefined),
        slow(40_000),
      );
      const pid = spawnSync('pgrep', ['-f', `etcd .*--name ${nodeJson(dirs.f).nodeId}`], { encoding: 'utf8' }).stdout.trim();
      expect(pid, "the founder's etcd member runs").toMatch(/^\d+$/);
      process.kill(Number(pid), 'SIGSTOP');
      try {
        const client = new ApiClient({ managers: [f.address], tls: { rootPem: root }, timeoutMs: slow(20_000) });
        try {
          const answer = await eventually(
            'a join through the founder while its member is frozen',
            async () => client.call('join', { body: { token: f.tokens.worker, csr: csrs(1)[0]! } }).catch(() => undefined),
            slow(60_000),
          );
          expect(answer.nodeId).toMatch(/^[a-z0-9]{25}$/);
        } finally {
          await client.close();
        }
      } finally {
        process.kill(Number(pid), 'SIGCONT');
      }
    },
  );

  step(
    'a 300-join storm over the three managers while the leader manager is SIGKILLed (its member dies with it): no join fails for good, every certified node is listed; the worker fails over and renews',
    {
      timeout: slow(300_000),
    },
    async () => {
      const managers = [f.address, m2.address, m3.address];
      const clients = managers.map((m) => new ApiClient({ managers: [m], tls: { rootPem: root }, timeoutMs: slow(20_000) }));
      const pool = csrs(300);
      const joined: string[] = [];
      let gaveUp = 0;
      let retried = 0;
      let done = 0;
      let killed: Promise<unknown> | undefined;
      const leaderPid = spawnSync('pgrep', ['-f', `etcd .*--name ${nodeJson(dirs.f).nodeId}`], { encoding: 'utf8' }).stdout.trim();
      expect(leaderPid, 'the leader runs its etcd member').not.toBe('');
      const one = async (i: number): Promise<void> => {
        for (let attempt = 0; attempt < 40; attempt++) {
          try {
            const answer = await clients[(i + attempt) % 3]!.call('join', { body: { token: f.tokens.worker, csr: pool[i]! } });
            joined.push(answer.nodeId);
            done += 1;
            if (done === 60 && killed === undefined) killed = f.run.stop('SIGKILL');
            return;
          } catch (error) {
            if (!isMusterError(error) || !['STORE_UNAVAILABLE', 'STORE_CONFLICT', 'MANAGER_UNREACHABLE'].includes(error.code)) throw error;
            retried += 1;
            await new Promise((resolve) => setTimeout(resolve, 100 * (attempt + 1)));
          }
        }
        gaveUp += 1;
      };
      let next = 0;
      await Promise.all(
        Array.from({ length: 12 }, async () => {
          while (next < pool.length) await one(next++);
        }),
      );
      expect(killed).toBeDefined();
      await killed;
      // Its etcd member died with it (setpriv's parent-death signal).
      await eventually(
        "the killed leader's etcd member to be gone",
        async () => (spawnSync('kill', ['-0', leaderPid]).status !== 0 ? true : undefined),
        slow(20_000),
      );
      expect(gaveUp).toBe(0);
      expect(joined).toHaveLength(300);
      const listed = new Set((await nodesFrom(dirs.m2)).map((n) => n.id));
      for (const id of joined) expect(listed.has(id), `node ${id} got a certificate but is not listed`).toBe(true);
      console.log(`managed storm: 300 joins, ${retried} retried after a store error`);
      // The worker renews through a surviving manager.
      const before = readFileSync(join(certs(dirs.w1), 'node.crt'), 'utf8');
      worker.child.kill('SIGHUP');
      await eventually('the worker to renew with the leader down', async () =>
        readFileSync(join(certs(dirs.w1), 'node.crt'), 'utf8') !== before ? true : undefined,
      );
      // The leader comes back: its member rejoins the store and it serves again.
      await restart(f);
      // It remembers the members that joined after it (the next start can reach the store through them).
      const remembered = JSON.parse(readFileSync(join(dirs.f, 'manager', 'store.json'), 'utf8')) as { endpoints: string[] };
      expect([...remembered.endpoints].sort()).toEqual([m2.member.client, m3.member.client].sort());
      await eventually('three reachable managers again', async () => {
        const nodes = await nodesFrom(dirs.m2);
        return nodes.filter((n) => n.role === 'manager' && n.managerStatus !== 'Unreachable').length === 3 ? true : undefined;
      });
      await Promise.all(clients.map((c) => c.close()));
    },
  );

  step(
    'with three managers and one down, demoting a second is refused (QUORUM_AT_RISK), saying how many are reachable',
    { timeout: slow(120_000) },
    async () => {
      await m3.run.stop('SIGKILL');
      await eventually('m3 to show Unreachable', async () =>
        (await nodesFrom(dirs.f)).find((n) => n.id === nodeJson(dirs.m3).nodeId)?.managerStatus === 'Unreachable' ? true : undefined,
      );
      const refused = await runMuster(['node', 'demote', nodeJson(dirs.m2).nodeId, '--data-dir', dirs.f]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/QUORUM_AT_RISK|would leave 1 reachable of 2 store members/);
      expect(refused.stderr).toMatch(/1 reachable of 2/);
      expect((await nodesFrom(dirs.f)).find((n) => n.id === nodeJson(dirs.m2).nodeId)?.role).toBe('manager');
      await restart(m3);
    },
  );

  step(
    "etcd refuses a worker's, an API user's, a demoted manager's and a removed manager's certificate; a serving manager's is accepted",
    {
      timeout: slow(240_000),
    },
    async () => {
      const get = (cred: { cert: string; key: string }) =>
        etcdctl(f.member.client, rootFile, cred, ['get', '--prefix', '/muster/', '--keys-only', '--limit', '1']);
      // The same call with a serving manager's certificate, next to each refusal: the endpoint answers at that moment.
      const accepted = () => {
        const ok = get({ cert: join(certs(dirs.m2), 'node.crt'), key: join(certs(dirs.m2), 'node.key') });
        expect(ok.status, ok.out).toBe(0);
      };
      // etcd's auth refusal (a certificate from the cluster CA whose CN is no etcd user), not a TLS failure, a timeout or a bad path.
      const refused = (cred: { cert: string; key: string }) => {
        const no = get(cred);
        expect(no.status, no.out).not.toBe(0);
        expect(no.out).toMatch(/Error: etcdserver: permission denied/);
      };
      accepted();
      refused({ cert: join(certs(dirs.w1), 'node.crt'), key: join(certs(dirs.w1), 'node.key') });
      const api = await runMuster(['ca', 'create-api-certificate', 'alice', '--out', dirs.api, '--data-dir', dirs.f]);
      expect(api.code, api.stderr).toBe(0);
      refused({ cert: join(dirs.api, 'cert.pem'), key: join(dirs.api, 'key.pem') });
      // Demoted: m3's manager certificate, kept from before.
      const m3Kept = keepCredentials(dirs.m3, 'm3');
      expect(get(m3Kept).status).toBe(0);
      const demoted = await runMuster(['node', 'demote', nodeJson(dirs.m3).nodeId, '--data-dir', dirs.f]);
      expect(demoted.code, demoted.stderr).toBe(0);
      await eventually('the demoted manager to stop serving and drop its member', async () =>
        !existsSync(join(dirs.m3, 'manager', 'etcd')) ? true : undefined,
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${m3.run.stderr().slice(-4000)}`);
      });
      refused(m3Kept);
      accepted();
      // Removed: a fourth manager joins, is stopped and removed.
      const m4 = await joinManager(dirs.m4, f.tokens.manager, f.address);
      const m4Kept = keepCredentials(dirs.m4, 'm4');
      expect(get(m4Kept).status).toBe(0);
      await m4.run.stop('SIGTERM');
      const removed = await runMuster(['node', 'rm', '--force', nodeJson(dirs.m4).nodeId, '--data-dir', dirs.f]);
      expect(removed.code, removed.stderr).toBe(0);
      refused(m4Kept);
      accepted();
      const list = etcdctl(f.member.client, rootFile, { cert: join(certs(dirs.f), 'node.crt'), key: join(certs(dirs.f), 'node.key') }, [
        'member',
        'list',
        '-w',
        'json',
      ]);
      expect((JSON.parse(list.out) as { members: { name: string }[] }).members.map((m) => m.name).sort()).toEqual(
        [nodeJson(dirs.f).nodeId, nodeJson(dirs.m2).nodeId].sort(),
      );
    },
  );

  step('no secret in clear in an etcdctl get --prefix dump: no join token, no private key, no data key', () => {
    const dump = execFileSync(
      'etcdctl',
      [
        '--endpoints',
        `https://${f.member.client}`,
        '--cacert',
        rootFile,
        '--cert',
        join(certs(dirs.f), 'node.crt'),
        '--key',
        join(certs(dirs.f), 'node.key'),
        'get',
        '--prefix',
        '/',
        '-w',
        'json',
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    const values = (JSON.parse(dump) as { kvs?: { key: string; value: string }[] })
      .kvs!.map((kv) => `${Buffer.from(kv.key, 'base64').toString('utf8')} ${Buffer.from(kv.value, 'base64').toString('utf8')}`)
      .join('\n');
    expect(values).toContain('meta/tokens');
    expect(values).not.toContain(f.tokens.worker);
    expect(values).not.toContain(f.tokens.manager);
    expect(values).not.toContain('PRIVATE KEY');
    for (const dir of [dirs.f, dirs.m2]) expect(values).not.toContain(readFileSync(join(dir, 'manager', 'data.key'), 'utf8').trim());
  });

  step(
    'two of three managers killed: the API answers 503 STORE_UNAVAILABLE; init --force-new-cluster on the survivor brings joins and renewals back with the same root and tokens',
    {
      timeout: slow(300_000),
    },
    async () => {
      const m5 = await joinManager(dirs.m5, f.tokens.manager, f.address);
      await m2.run.stop('SIGKILL');
      await m5.run.stop('SIGKILL');
      const client = new ApiClient({ managers: [f.address], tls: { rootPem: root }, timeoutMs: slow(20_000) });
      const down = await eventually('the survivor to answer 503', async () => {
        const outcome = await client.call('join', { body: { token: f.tokens.worker, csr: csrs(1)[0]! } }).catch((e: unknown) => e);
        return isMusterError(outcome, 'STORE_UNAVAILABLE') ? outcome : undefined;
      });
      expect(down).toMatchObject({ code: 'STORE_UNAVAILABLE', statusCode: 503 });
      await f.run.stop('SIGTERM');
      const recovered = start(['init', '--force-new-cluster', '--data-dir', dirs.f, '--listen-addr', f.address]);
      await recovered.waitFor(/Cluster recovered/, slow(120_000));
      f.run = recovered;

      const again = await eventually('joins to work again', async () =>
        client.call('join', { body: { token: f.tokens.worker, csr: csrs(1)[0]! } }).catch(() => undefined),
      );
      expect(again.rootCA).toBe(root);
      const tokens = (await runMuster(['join-token', '-q', 'manager', '--data-dir', dirs.f])).stdout.trim();
      expect(tokens).toBe(f.tokens.manager);
      const before = readFileSync(join(certs(dirs.w1), 'node.crt'), 'utf8');
      worker.child.kill('SIGHUP');
      await eventually(
        'the worker to renew against the recovered manager',
        async () => (readFileSync(join(certs(dirs.w1), 'node.crt'), 'utf8') !== before ? true : undefined),
        slow(90_000),
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${worker.stderr().slice(-4000)}`);
      });
      const managers = (await nodesFrom(dirs.f)).filter((n) => n.role === 'manager' && !n.removed);
      expect(managers.map((n) => n.id)).toEqual([nodeJson(dirs.f).nodeId]);
      // New managers can join again.
      const m6 = await joinManager(scratch.path('m6'), f.tokens.manager, f.address);
      expect(nodeJson(m6.dir).role).toBe('manager');
      await client.close();
    },
  );
});

describe('a managed store from scratch or grown in place', () => {
  it('init --store etcd without etcd: ETCD_MISSING with the install command, and nothing written', { timeout: slow(60_000) }, async () => {
    const dir = scratch.path('no-etcd');
    const r = await runMuster(['init', '--store', 'etcd', '--data-dir', dir, '--listen-addr', '127.0.0.1:0', '--etcd-binary', scratch.path('no-such-etcd')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('was not found');
    expect(r.stderr).toContain('apt-get install etcd-server');
    expect(existsSync(dir)).toBe(false);
  });

  it('store migrate --to etcd grows an embedded cluster onto its own member: same cluster, root and tokens; the worker renews; a manager joins', {
    timeout: slow(240_000),
  }, async () => {
    const dir = scratch.path('grow');
    const founder = start(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    const [, token, address] = (await founder.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/, slow(60_000))) as unknown as [
      string,
      string,
      string,
    ];
    const w = await joinWorker(scratch.path('grow-w'), token, address);
    const managerToken = (await runMuster(['join-token', '-q', 'manager', '--data-dir', dir])).stdout.trim();
    const running = await runMuster(['store', 'migrate', '--to', 'etcd', '--data-dir', dir]);
    expect(running.code).toBe(1);
    expect(running.stderr).toContain('the manager is running on this data dir');
    await founder.stop('SIGTERM');
    const member = await memberFlags();
    const moved = await runMuster(['store', 'migrate', '--to', 'etcd', '--data-dir', dir, ...member.flags]);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toContain('managed store');
    const back = start(['run', '--data-dir', dir, '--listen-addr', address]);
    await back.waitFor(/manager listening on/, slow(90_000));
    expect((await runMuster(['join-token', '-q', 'manager', '--data-dir', dir])).stdout.trim()).toBe(managerToken);
    const before = readFileSync(join(certs(scratch.path('grow-w')), 'node.crt'), 'utf8');
    w.child.kill('SIGHUP');
    await eventually('the worker to renew against the migrated manager', async () =>
      readFileSync(join(certs(scratch.path('grow-w')), 'node.crt'), 'utf8') !== before ? true : undefined,
    );
    const m2 = await joinManager(scratch.path('grow-m2'), managerToken, address);
    expect(nodeJson(m2.dir).role).toBe('manager');
    expect(rootOf(m2.dir)).toBe(rootOf(dir));
    const managers = (await nodesFrom(m2.dir)).filter((n) => n.role === 'manager');
    expect(managers).toHaveLength(2);
  });
});
