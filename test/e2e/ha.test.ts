/**
 * Several managers on etcd (issue 14), with real etcd processes and real
 * muster processes on 127.0.0.1 with random ports: every manager-token join
 * makes a serving manager, the cluster survives losing one, a rotation or an
 * expiry change on one manager holds on all, etcd can lose a member or go
 * away entirely, a cluster can move from the embedded store into etcd.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { isMusterError } from '../../src/core/errors.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { runMuster, spawnMuster, type ChildRun } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { opensslStatus, scratchDir } from '../helpers/openssl.js';
import { eventually, nodesFrom } from '../helpers/processes.js';
import { slow } from '../helpers/slowdown.js';
import { story } from '../helpers/story.js';

const scratch = scratchDir('muster-ha-');
const FAST = { MUSTER_POLL_INTERVAL: '1s', MUSTER_RENEW_BACKOFF_BASE: '300ms', MUSTER_LOG_LEVEL: 'info' };
const running: ChildRun[] = [];
const clusters: EtcdCluster[] = [];
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop('SIGKILL')));
  await Promise.all(clusters.map((c) => c.stop()));
  scratch.cleanup();
});

function start(argv: string[], env: Record<string, string> = {}): ChildRun {
  const run = spawnMuster(argv, { env: { ...FAST, ...env } });
  running.push(run);
  return run;
}

async function etcd(options: Parameters<typeof startEtcd>[0] = {}): Promise<EtcdCluster> {
  const cluster = await startEtcd(options);
  clusters.push(cluster);
  return cluster;
}

const certs = (dir: string) => join(dir, 'certificates');
const rootOf = (dir: string): string => readFileSync(join(certs(dir), 'root-ca.crt'), 'utf8');
const nodeJson = (dir: string): { nodeId: string; clusterId: string; role: string; managers: string[] } =>
  JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8'));
const verify = (dir: string) => opensslStatus(['verify', '-CAfile', join(certs(dir), 'root-ca.crt'), join(certs(dir), 'node.crt')]).status;

/** A client with a node's own credentials, to the managers it knows (or to `managers`). */
function clientOf(dir: string, managers?: string[]): ApiClient {
  return new ApiClient({
    managers: managers ?? nodeJson(dir).managers,
    tls: { rootPem: rootOf(dir), certPem: readFileSync(join(certs(dir), 'node.crt'), 'utf8'), keyPem: readFileSync(join(certs(dir), 'node.key'), 'utf8') },
  });
}

/** Founds a cluster on etcd and returns the founder with its address and tokens. */
async function found(store: EtcdCluster, dir: string, extra: string[] = []) {
  const run = start(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0', '--store', store.storeFlag, ...extra]);
  const [, worker, address] = (await run.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
  const manager = (await runMuster(['join-token', '-q', 'manager', '--data-dir', dir])).stdout.trim();
  return { run, address, tokens: { worker, manager } };
}

/** Joins a node as a child process; managers listen on 127.0.0.1 with a port of the OS's choosing. */
async function joinNode(dir: string, token: string, via: string, role: 'worker' | 'manager') {
  const run = start(['join', via, '--data-dir', dir, '--listen-addr', '127.0.0.1:0'], { MUSTER_TOKEN: token });
  await run.waitFor(/This node joined cluster/);
  const address = role === 'manager' ? (await run.waitFor(/"advertise":"(127\.0\.0\.1:\d+)"/))[1]! : undefined;
  return { run, address, dir };
}

/** A fresh CSR (keys made ahead of a storm, so the clients do not compete with the managers for CPU). */
const csrs = (n: number): string[] => Array.from({ length: n }, () => createCsr({ privateKey: generateNodeKeySync().privateKey }));

describe('three managers on etcd', () => {
  const { step } = story();
  let store: EtcdCluster;
  const dirs = {
    f: scratch.path('f'),
    m2: scratch.path('m2'),
    m3: scratch.path('m3'),
    w1: scratch.path('w1'),
    w2: scratch.path('w2'),
    w3: scratch.path('w3'),
    w4: scratch.path('w4'),
  };
  let founder: Awaited<ReturnType<typeof found>>;
  let founderRun: ChildRun;
  const managerAddr: Record<'f' | 'm2' | 'm3', string> = { f: '', m2: '', m3: '' };
  const workers: Record<string, ChildRun> = {};

  step(
    'the manager token makes serving managers; workers join through each; all six verify; every manager serves the same root',
    {
      timeout: slow(90_000),
    },
    async () => {
      store = await etcd();
      founder = await found(store, dirs.f);
      founderRun = founder.run;
      managerAddr.f = founder.address;
      const m2 = await joinNode(dirs.m2, founder.tokens.manager, founder.address, 'manager');
      managerAddr.m2 = m2.address!;
      const m3 = await joinNode(dirs.m3, founder.tokens.manager, managerAddr.m2, 'manager');
      managerAddr.m3 = m3.address!;
      for (const [name, via] of [
        ['w1', managerAddr.f],
        ['w2', managerAddr.m2],
        ['w3', managerAddr.m3],
      ] as const) {
        workers[name] = (await joinNode(dirs[name], founder.tokens.worker, via, 'worker')).run;
      }
      for (const dir of Object.values(dirs).slice(0, 6)) expect(verify(dir), dir).toBe(0);
      for (const name of ['m2', 'm3'] as const) {
        expect(nodeJson(dirs[name]).role).toBe('manager');
        expect(new X509Certificate(readFileSync(join(certs(dirs[name]), 'node.crt'))).subjectAltName).toContain('IP Address:127.0.0.1');
        expect(existsSync(join(dirs[name], 'manager', 'data.key'))).toBe(true);
      }
      const roots = await Promise.all(Object.values(managerAddr).map(async (a) => (await curl(['-k', `https://${a}/v1/ca`])).body));
      expect(new Set(roots).size).toBe(1);
      expect(roots[0]).toBe(rootOf(dirs.f));
      const nodes = await nodesFrom(dirs.m3);
      expect(
        nodes
          .filter((n) => n.role === 'manager')
          .map((n) => n.managerStatus)
          .sort(),
      ).toEqual(['Leader', 'Reachable', 'Reachable']);
      // Nodes learn every manager.
      await eventually('w1 to know all three managers', async () => (nodeJson(dirs.w1).managers.length === 3 ? true : undefined));
    },
  );

  step('no private key sits in clear in etcd', () => {
    const dump = execFileSync('etcdctl', [...store.ctlArgs(), 'get', '--prefix', '/muster/'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
    expect(dump).toMatch(/meta\/ca/);
    expect(dump).not.toMatch(/PRIVATE KEY/);
    // The node keys and the CA key in DER (base64 bodies) appear nowhere either.
    for (const dir of [dirs.f, dirs.m2, dirs.w1]) {
      const body = readFileSync(join(certs(dir), 'node.key'), 'utf8')
        .split('\n')
        .filter((l) => l.length > 40)[0]!;
      expect(dump).not.toContain(body);
    }
  });

  step(
    'a rotation on manager 2 is in force on every manager the moment it answers; an expiry change on manager 3 applies on manager 1',
    {
      timeout: slow(60_000),
    },
    async () => {
      const old = (await runMuster(['join-token', '-q', 'worker', '--data-dir', dirs.m2])).stdout.trim();
      const root = rootOf(dirs.f);
      const pool = csrs(60);
      const attempts: { at: number; accepted: boolean; manager: string }[] = [];
      let answeredAt = Number.POSITIVE_INFINITY;
      let stop = false;
      const loop = async (address: string): Promise<void> => {
        const client = new ApiClient({ managers: [address], tls: { rootPem: root } });
        try {
          const deadline = Date.now() + slow(20_000);
          while (!stop && Date.now() < deadline) {
            const at = Date.now();
            try {
              await client.call('join', { body: { token: old, csr: pool[attempts.length % pool.length]! } });
              attempts.push({ at, accepted: true, manager: address });
            } catch (error) {
              if (!isMusterError(error)) throw error;
              attempts.push({ at, accepted: false, manager: address });
            }
            if (Date.now() > answeredAt + 1_000) stop = true;
          }
        } finally {
          await client.close();
        }
      };
      const loops = Object.values(managerAddr).map(loop);
      const rotated = await runMuster(['join-token', '--rotate', 'worker', '--data-dir', dirs.m2]);
      answeredAt = Date.now();
      expect(rotated.code, rotated.stderr).toBe(0);
      await Promise.all(loops);
      const after = attempts.filter((a) => a.at > answeredAt);
      expect(after.length).toBeGreaterThan(0);
      expect(after.filter((a) => a.accepted)).toEqual([]);
      expect(new Set(after.map((a) => a.manager)).size).toBe(3);

      expect((await runMuster(['update', '--cert-expiry', '1h', '--data-dir', dirs.m3])).code).toBe(0);
      const fresh = (await runMuster(['join-token', '-q', 'worker', '--data-dir', dirs.m3])).stdout.trim();
      const client = new ApiClient({ managers: [managerAddr.f], tls: { rootPem: root } });
      try {
        const joined = await client.call('join', { body: { token: fresh, csr: csrs(1)[0]! } });
        expect(Date.parse(joined.notAfter)).toBeLessThanOrEqual(Date.now() + 3_600_000);
      } finally {
        await client.close();
      }
    },
  );

  step(
    'SIGKILL the founder: joins and renewals go on through the others, node ls shows it Unreachable, then Reachable once back',
    {
      timeout: slow(90_000),
    },
    async () => {
      founderRun.child.kill('SIGKILL');
      await founderRun.exit;
      const token = (await runMuster(['join-token', '-q', 'worker', '--data-dir', dirs.m2])).stdout.trim();
      workers.w4 = (await joinNode(dirs.w4, token, managerAddr.m2, 'worker')).run;
      expect(verify(dirs.w4)).toBe(0);
      const before = new X509Certificate(readFileSync(join(certs(dirs.w1), 'node.crt'))).serialNumber;
      workers.w1!.child.kill('SIGHUP');
      await eventually('w1 to renew through another manager', async () =>
        new X509Certificate(readFileSync(join(certs(dirs.w1), 'node.crt'))).serialNumber !== before ? true : undefined,
      );
      expect(verify(dirs.w1)).toBe(0);
      const founderId = nodeJson(dirs.f).nodeId;
      await eventually('the founder to show Unreachable', async () =>
        (await nodesFrom(dirs.m3)).find((n) => n.id === founderId)?.managerStatus === 'Unreachable' ? true : undefined,
      );
      founderRun = start(['run', '--data-dir', dirs.f]);
      managerAddr.f = (await founderRun.waitFor(/"advertise":"(127\.0\.0\.1:\d+)"/))[1]!;
      await eventually('the founder to show Reachable', async () =>
        (await nodesFrom(dirs.m3)).find((n) => n.id === founderId)?.managerStatus === 'Reachable' ? true : undefined,
      );
    },
  );

  step(
    'concurrent promote/demote, expiry changes and renewals against one node record, spread over the managers: none is lost (100 rounds)',
    {
      timeout: slow(120_000),
    },
    async () => {
      // A node record with no process behind it, so nothing but these requests changes it.
      const token = (await runMuster(['join-token', '-q', 'worker', '--data-dir', dirs.m2])).stdout.trim();
      const root = rootOf(dirs.f);
      const key = generateNodeKeySync();
      const joiner = new ApiClient({ managers: [managerAddr.m2], tls: { rootPem: root } });
      const joined = await joiner.call('join', { body: { token, csr: createCsr({ privateKey: key.privateKey }) } });
      await joiner.close();
      // The admin calls go with an API user's certificate, which nothing renews behind the step's back: a manager's own
      // certificate is replaced by its daemon (an expiry change makes one that outlives it renew, so can SIGHUP), and two
      // renewals later the copy read at the start is neither its current certificate nor the one before (CERT_UNTRUSTED).
      const userKey = generateNodeKeySync();
      const bootstrap = clientOf(dirs.m2, [managerAddr.m2]);
      const user = await bootstrap.call('createUser', { body: { name: 'storm-admin', csr: createCsr({ privateKey: userKey.privateKey }) } });
      await bootstrap.close();
      const userTls = { rootPem: root, certPem: user.certificate, keyPem: userKey.privateKeyPem };
      const admins = [managerAddr.f, managerAddr.m2, managerAddr.m3].map((address) => new ApiClient({ managers: [address], tls: userTls }));
      const founderSerial = () => new X509Certificate(readFileSync(join(certs(dirs.f), 'node.crt'))).serialNumber;
      let nodeTls = { rootPem: root, certPem: joined.certificate, keyPem: key.privateKeyPem };
      try {
        for (let round = 0; round < 100; round++) {
          if (round === 30 || round === 60) {
            // The founder renews its own certificate meanwhile (twice: its certificate of the step's start is then refused).
            const before = founderSerial();
            founderRun.child.kill('SIGHUP');
            await eventually('the founder to renew', async () => (founderSerial() !== before ? true : undefined));
          }
          const role = round % 2 === 0 ? 'manager' : 'worker';
          const expiry = round % 2 === 0 ? '2h' : '3h';
          const fresh = generateNodeKeySync();
          const asNode = new ApiClient({ managers: [Object.values(managerAddr)[round % 3]!], tls: nodeTls });
          const [, , renewed] = await Promise.all([
            admins[round % 3]!.call(role === 'manager' ? 'promote' : 'demote', { params: { id: joined.nodeId } }),
            admins[(round + 1) % 3]!.call('updateCluster', { body: { certExpiry: expiry } }),
            asNode.call('renew', { body: { csr: createCsr({ privateKey: fresh.privateKey }) } }),
          ]);
          await asNode.close();
          nodeTls = { rootPem: root, certPem: renewed.certificate, keyPem: fresh.privateKeyPem };
          const node = await admins[(round + 2) % 3]!.call('getNode', { params: { id: joined.nodeId } });
          expect(node.role).toBe(role);
          expect(node.certSerial).toBe(new X509Certificate(renewed.certificate).serialNumber);
          expect((await admins[round % 3]!.call('cluster')).certExpiry).toBe(expiry);
        }
        await admins[0]!.call('demote', { params: { id: joined.nodeId } });
      } finally {
        await Promise.all(admins.map((a) => a.close()));
      }
    },
  );

  step('guards: with three serving managers, demoting two works and the third is refused; the demoted stop serving', { timeout: slow(90_000) }, async () => {
    const ids = { f: nodeJson(dirs.f).nodeId, m2: nodeJson(dirs.m2).nodeId, m3: nodeJson(dirs.m3).nodeId };
    expect((await runMuster(['node', 'demote', ids.f, '--data-dir', dirs.m3])).code).toBe(0);
    expect((await runMuster(['node', 'demote', ids.m2, '--data-dir', dirs.m3])).code).toBe(0);
    const third = await runMuster(['node', 'demote', ids.m3, '--data-dir', dirs.m3]);
    expect(third.code).toBe(1);
    expect(third.stderr).toMatch(/error: cannot demote \S+: it is the last serving manager of the cluster/);
    await founderRun.waitFor(/demoted: this node no longer serves as a manager/);
    await eventually('the demoted managers to stop serving', async () => {
      const managers = (await nodesFrom(dirs.m3)).filter((n) => n.role === 'manager');
      return managers.length === 1 && managers[0]!.managerStatus === 'Leader' ? true : undefined;
    });
    expect(existsSync(join(dirs.f, 'manager', 'data.key'))).toBe(false); // a demoted node keeps no cluster secret
    const leave = await runMuster(['leave', '--force', '--data-dir', dirs.m3]);
    expect(leave.code).toBe(1);
    expect(leave.stderr).toMatch(/last serving manager/);
    // The cluster still works through the last manager: a worker renews.
    const before = new X509Certificate(readFileSync(join(certs(dirs.w2), 'node.crt'))).serialNumber;
    workers.w2!.child.kill('SIGHUP');
    await eventually('w2 to renew', async () =>
      new X509Certificate(readFileSync(join(certs(dirs.w2), 'node.crt'))).serialNumber !== before ? true : undefined,
    );
  });
});

describe('a manager that leaves', () => {
  it('leave --force: its daemon exits 0 and says it left; its audit trail stays, through a new init in the same data dir', {
    timeout: slow(90_000),
  }, async () => {
    const store = await etcd();
    const f = await found(store, scratch.path('lv-f'));
    const dir = scratch.path('lv-m2');
    const m2 = await joinNode(dir, f.tokens.manager, f.address, 'manager');
    const audit = join(dir, 'manager', 'audit.log');
    expect((await runMuster(['join-token', '--rotate', 'worker', '--data-dir', dir])).code).toBe(0); // an audited action on m2
    const trail = readFileSync(audit, 'utf8');
    expect(trail).toMatch(/"action":"join-token.rotate"/);
    const left = await runMuster(['leave', '--force', '--data-dir', dir]);
    expect(left.code, left.stderr).toBe(0);
    expect(left.stdout).toContain(`its audit trail stays in ${audit}`);
    expect(await m2.run.exit).toBe(0);
    expect(m2.run.stderr()).toMatch(/this node left the cluster \('muster leave'\); its daemon stops/);
    const afterLeave = readFileSync(audit, 'utf8'); // m2 took its own leave first, and audited it
    expect(afterLeave.startsWith(trail)).toBe(true);
    expect(afterLeave).toMatch(/"action":"node.leave"/);
    // A new cluster founded in the same data dir appends to the trail, never replaces it.
    const again = start(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    await again.waitFor(/muster join --token/);
    expect(readFileSync(audit, 'utf8').startsWith(afterLeave)).toBe(true);
    expect(await again.stop()).toBe(0);
  });
});

describe('promotion of a running worker on etcd', () => {
  it('starts serving on its listen address; demotion stops it', { timeout: slow(60_000) }, async () => {
    const store = await etcd();
    const f = await found(store, scratch.path('p-f'));
    const w = await joinNode(scratch.path('p-w'), f.tokens.worker, f.address, 'worker');
    const id = nodeJson(scratch.path('p-w')).nodeId;
    expect((await runMuster(['node', 'promote', id, '--data-dir', scratch.path('p-f')])).code).toBe(0);
    const [, addr] = await w.run.waitFor(/"advertise":"(127\.0\.0\.1:\d+)"/);
    await w.run.waitFor(/promoted: this node now serves as a manager/);
    expect((await curl(['-k', `https://${addr}/v1/ca`])).body).toBe(rootOf(scratch.path('p-f')));
    await eventually('the promoted node to show Reachable', async () =>
      (await nodesFrom(scratch.path('p-f'))).find((n) => n.id === id)?.managerStatus === 'Reachable' ? true : undefined,
    );
    expect((await runMuster(['node', 'demote', id, '--data-dir', scratch.path('p-f')])).code).toBe(0);
    await w.run.waitFor(/demoted: this node no longer serves as a manager/);
    expect((await curl(['-k', '--max-time', '2', `https://${addr}/v1/ca`])).status).toBe(0);
  });
});

describe('a 3-member etcd cluster', () => {
  it('loses a member during a 300-join storm over three managers: no join fails for good, every certified node is listed; all of etcd down is 503 and recovers', {
    timeout: slow(180_000),
  }, async () => {
    const store = await etcd({ size: 3 });
    const f = await found(store, scratch.path('s-f'));
    const m2 = await joinNode(scratch.path('s-m2'), f.tokens.manager, f.address, 'manager');
    const m3 = await joinNode(scratch.path('s-m3'), f.tokens.manager, f.address, 'manager');
    const managers = [f.address, m2.address!, m3.address!];
    const root = rootOf(scratch.path('s-f'));
    const pool = csrs(300);
    const clients = managers.map((m) => new ApiClient({ managers: [m], tls: { rootPem: root }, timeoutMs: slow(20_000) }));
    const joined: string[] = [];
    let gaveUp = 0;
    let retried = 0;
    let done = 0;
    let killed = false;
    const one = async (i: number): Promise<void> => {
      for (let attempt = 0; attempt < 40; attempt++) {
        try {
          const answer = await clients[(i + attempt) % 3]!.call('join', { body: { token: f.tokens.worker, csr: pool[i]! } });
          joined.push(answer.nodeId);
          done += 1;
          if (done === 60 && !killed) {
            killed = true;
            void store.kill(1);
          }
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
    expect(killed).toBe(true);
    expect(gaveUp).toBe(0);
    expect(joined).toHaveLength(300);
    const listed = new Set((await nodesFrom(scratch.path('s-m2'))).map((n) => n.id));
    for (const id of joined) expect(listed.has(id), `node ${id} got a certificate but is not listed`).toBe(true);
    console.log(`storm: 300 joins, ${retried} retried after a store error`);

    // All of etcd down: the managers stay up and say 503 STORE_UNAVAILABLE; back again, joins work.
    await store.kill(0);
    await store.kill(2);
    const down = await clients[0]!.call('join', { body: { token: f.tokens.worker, csr: csrs(1)[0]! } }).catch((e: unknown) => e);
    expect(down).toMatchObject({ code: 'STORE_UNAVAILABLE', statusCode: 503 });
    expect((await curl(['-k', `https://${managers[1]}/v1/ca`])).status).toBe(200); // still serving
    await Promise.all([store.restart(0), store.restart(1), store.restart(2)]);
    await eventually('joins to work again once etcd is back', async () =>
      (await clients[2]!.call('join', { body: { token: f.tokens.worker, csr: csrs(1)[0]! } })).nodeId ? true : undefined,
    );
    for (const run of [f.run, m2.run, m3.run]) expect(run.child.exitCode).toBeNull();
    await Promise.all(clients.map((c) => c.close()));
  });
});

describe('etcd with TLS and client certificates', () => {
  it('the founder uses the --store-… flags; a manager joined with the manager token needs none', { timeout: slow(60_000) }, async () => {
    const store = await etcd({ tls: true });
    const tls = store.tls!;
    const dir = scratch.path('t-f');
    const f = await found(store, dir, ['--store-cacert', tls.caFile, '--store-cert', tls.clientCert, '--store-key', tls.clientKey]);
    const m2 = await joinNode(scratch.path('t-m2'), f.tokens.manager, f.address, 'manager');
    const w = await joinNode(scratch.path('t-w'), f.tokens.worker, m2.address!, 'worker');
    expect(verify(w.dir)).toBe(0);
    expect(JSON.parse(readFileSync(join(scratch.path('t-m2'), 'manager', 'store.json'), 'utf8'))).toMatchObject({ kind: 'etcd', endpoints: store.endpoints });
  });
});

describe('the embedded store', () => {
  it('refuses a manager-token join before any key is made, and writes nothing', { timeout: slow(60_000) }, async () => {
    const m = start(['init', '--data-dir', scratch.path('e-m'), '--listen-addr', '127.0.0.1:0']);
    const [, address] = await m.waitFor(/muster join --token \S+ (127\.0\.0\.1:\d+)/);
    const token = (await runMuster(['join-token', '-q', 'manager', '--data-dir', scratch.path('e-m')])).stdout.trim();
    const dir = scratch.path('e-refused');
    const r = await runMuster(['join', address!, '--data-dir', dir], { env: { MUSTER_TOKEN: token } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: this cluster keeps its state in an embedded store, which only one manager can serve/);
    expect(r.stderr).toMatch(/hint: .*muster store migrate --to etcd/);
    expect(r.stderr).not.toMatch(/generating a key/);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
  });

  it('migrates to etcd: same cluster ID, root and tokens; workers renew against it; then a manager-token join works', { timeout: slow(90_000) }, async () => {
    const dir = scratch.path('mig-m');
    let m = start(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    const [, token, address] = (await m.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    const ws = [await joinNode(scratch.path('mig-w1'), token, address, 'worker'), await joinNode(scratch.path('mig-w2'), token, address, 'worker')];
    const before = {
      cluster: nodeJson(dir).clusterId,
      root: rootOf(dir),
      worker: token,
      manager: (await runMuster(['join-token', '-q', 'manager', '--data-dir', dir])).stdout.trim(),
    };
    const store = await etcd();
    const busy = await runMuster(['store', 'migrate', '--to', store.storeFlag, '--data-dir', dir]);
    expect(busy.code).toBe(1); // an operational failure, not a usage error
    expect(busy.stderr).toMatch(/the manager is running/);
    expect(await m.stop()).toBe(0);
    const migrated = await runMuster(['store', 'migrate', '--to', store.storeFlag, '--data-dir', dir]);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stdout).toMatch(/Migrated cluster \S+ \(3 nodes, \d+ certificate records\)/);
    m = start(['run', '--data-dir', dir, '--listen-addr', address]);
    await m.waitFor(/"store":"etcd /);
    expect(nodeJson(dir).clusterId).toBe(before.cluster);
    expect((await curl(['-k', `https://${address}/v1/ca`])).body).toBe(before.root);
    expect((await runMuster(['join-token', '-q', 'worker', '--data-dir', dir])).stdout.trim()).toBe(before.worker);
    expect((await runMuster(['join-token', '-q', 'manager', '--data-dir', dir])).stdout.trim()).toBe(before.manager);
    for (const w of ws) {
      const serial = new X509Certificate(readFileSync(join(certs(w.dir), 'node.crt'))).serialNumber;
      w.run.child.kill('SIGHUP');
      await eventually(`${w.dir} to renew`, async () =>
        new X509Certificate(readFileSync(join(certs(w.dir), 'node.crt'))).serialNumber !== serial ? true : undefined,
      );
    }
    const m2 = await joinNode(scratch.path('mig-m2'), before.manager, address, 'manager');
    expect((await curl(['-k', `https://${m2.address}/v1/ca`])).body).toBe(before.root);
  });
});
