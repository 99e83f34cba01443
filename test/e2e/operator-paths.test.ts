/**
 * Every operator path ends in a working cluster (issue 15, DESIGN §11), tried
 * with the real CLI as an operator would: bad or busy addresses, moved
 * addresses, certificates expired while a host was down (libfaketime moves a
 * whole process's clock), removal and rejoining, secrets off the command
 * line, and what `status` and `/healthz` say.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { faked, runMuster, spawnMuster, type ChildRun } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { startEtcd } from '../helpers/etcd.js';
import { opensslStatus, scratchDir } from '../helpers/openssl.js';
import { waitUntil } from '../helpers/processes.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-ops-');
const FAST = { MUSTER_POLL_INTERVAL: '1s', MUSTER_RENEW_BACKOFF_BASE: '300ms', MUSTER_LOG_LEVEL: 'info' };
const running: ChildRun[] = [];
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop('SIGKILL')));
  scratch.cleanup();
});

function start(argv: string[], options: { env?: Record<string, string> } = {}): ChildRun {
  const run = spawnMuster(argv, { env: { ...FAST, ...options.env } });
  running.push(run);
  return run;
}

const nodeJson = (dir: string) =>
  JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8')) as {
    nodeId: string;
    clusterId: string;
    advertiseAddr?: string;
    servingAddr?: string;
    managers: string[];
  };
const certOf = (dir: string): X509Certificate => new X509Certificate(readFileSync(join(dir, 'certificates', 'node.crt')));
const contents = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir) : []);

/** Every entry under `dir`, and for each file the SHA-256 of its bytes. */
function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const info = lstatSync(path);
      out[path.slice(dir.length)] = info.isFile() ? createHash('sha256').update(readFileSync(path)).digest('hex') : info.isDirectory() ? 'folder' : 'other';
      if (info.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return out;
}

async function initManager(dir: string, extra: string[] = [], options: { env?: Record<string, string> } = {}) {
  const run = start(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0', ...extra], options);
  const [, token, address] = (await run.waitFor(/muster join --token (SWMTKN-1-\S+) (\S+:\d+)/)) as unknown as [string, string, string];
  return { run, token, address };
}

async function joinWorker(dir: string, token: string, address: string, options: { env?: Record<string, string> } = {}) {
  const run = start(['join', address, '--data-dir', dir], { env: { MUSTER_TOKEN: token, ...options.env } });
  await run.waitFor(/This node joined cluster/);
  return run;
}

describe('addresses', () => {
  it('init on a busy port exits 1 (an operational failure, not a usage error) with a hint and leaves no data dir behind', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    const dir = scratch.path('busy');
    try {
      const r = await runMuster(['init', '--data-dir', dir, '--listen-addr', `127.0.0.1:${port}`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`error: the address 127\\.0\\.0\\.1:${port} is already in use\\nhint: pick another --listen-addr`));
      expect(existsSync(dir)).toBe(false);
    } finally {
      busy.close();
    }
  });

  it('init on an unresolvable listen host exits with a hint, and an existing empty data dir stays empty', async () => {
    const dir = scratch.path('garbage');
    const r1 = await runMuster(['init', '--data-dir', dir, '--listen-addr', 'garbage.invalid:4377']);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/error: the listen host garbage\.invalid cannot be resolved\nhint: /);
    expect(existsSync(dir)).toBe(false);
  });

  it('listening on all interfaces without --advertise-addr advertises the default route’s address (or refuses with a hint)', async () => {
    const route = readFileSync('/proc/net/route', 'utf8')
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .find((f) => f[1] === '00000000');
    const expected = route === undefined ? undefined : networkInterfaces()[route[0]!]?.find((a) => a.family === 'IPv4' && !a.internal)?.address;
    const dir = scratch.path('wildcard');
    if (expected === undefined) {
      const r = await runMuster(['init', '--data-dir', dir, '--listen-addr', '0.0.0.0:0']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/hint: pass --advertise-addr/);
      return;
    }
    const m = start(['init', '--data-dir', dir, '--listen-addr', '0.0.0.0:0']);
    const [, address] = await m.waitFor(/muster join --token \S+ (\S+)/);
    expect(address).toMatch(new RegExp(`^${expected.replaceAll('.', '\\.')}:\\d+$`));
    expect(certOf(dir).subjectAltName).toContain(`IP Address:${expected}`);
    await m.stop();
  });

  it('run --advertise-addr and a moved listener: node.json, the manager certificate and what nodes are told all follow', {
    timeout: slow(60_000),
  }, async () => {
    const dir = scratch.path('moved');
    const wDir = scratch.path('moved-w');
    const m = await initManager(dir);
    const port = m.address.split(':')[1]!;
    const w = await joinWorker(wDir, m.token, m.address);
    expect(await m.run.stop()).toBe(0);
    // Same port on every interface, advertised at another address: the worker still reaches it at the old one, and is told the new one.
    const moved = start(['run', '--data-dir', dir, '--listen-addr', `0.0.0.0:${port}`, '--advertise-addr', '127.0.0.2']);
    const [, addr] = await moved.waitFor(/"advertise":"(127\.0\.0\.2:\d+)"/);
    expect(addr).toBe(`127.0.0.2:${port}`);
    expect(nodeJson(dir).servingAddr).toBe(addr);
    expect(certOf(dir).subjectAltName).toContain('IP Address:127.0.0.2'); // re-issued at start with the new SAN
    expect(opensslStatus(['verify', '-CAfile', join(dir, 'certificates', 'root-ca.crt'), join(dir, 'certificates', 'node.crt')]).status).toBe(0);
    expect((await runMuster(['join-token', 'worker', '--data-dir', dir])).stdout).toContain(` ${addr}\n`);
    await w.waitFor(new RegExp(`managers are now ${addr!.replaceAll('.', '\\.')}`));
    expect(nodeJson(wDir).managers).toEqual([addr]);
    expect(await moved.stop()).toBe(0);
    // A new listen port and no --advertise-addr: the advertised port follows the listener.
    const again = start(['run', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    const [, addr2] = await again.waitFor(/"advertise":"(127\.0\.0\.2:\d+)"/);
    expect(addr2).not.toBe(addr);
    expect(nodeJson(dir).advertiseAddr).toBe(addr2!.replace(/:\d+$/, ':0'));
    await again.stop();
    await w.stop();
  });
});

describe('certificates that expired while the hosts were down', () => {
  it('a worker and a single manager stopped past their expiry both come back with muster run, same node IDs', { timeout: slow(90_000) }, async () => {
    const mDir = scratch.path('exp-m');
    const wDir = scratch.path('exp-w');
    const m = await initManager(mDir, ['--cert-expiry', '1h']);
    const w = await joinWorker(wDir, m.token, m.address);
    const ids = { m: nodeJson(mDir).nodeId, w: nodeJson(wDir).nodeId };
    expect(await w.stop()).toBe(0);
    expect(await m.run.stop()).toBe(0);
    // Two hours later (both certificates expired an hour ago).
    const m2 = start(['run', '--data-dir', mDir, '--listen-addr', m.address], { env: faked('+2h') });
    await m2.waitFor(/this manager re-issued its own certificate/);
    await m2.waitFor(/manager listening on/);
    const w2 = start(['run', '--data-dir', wDir], { env: faked('+2h') });
    await w2.waitFor(/the node certificate expired at .*; renewing it now/);
    await w2.waitFor(/renewed until/);
    expect(nodeJson(mDir).nodeId).toBe(ids.m);
    expect(nodeJson(wDir).nodeId).toBe(ids.w);
    const later = Date.now() + 2 * 3_600_000;
    for (const dir of [mDir, wDir]) expect(Date.parse(certOf(dir).validTo)).toBeGreaterThan(later);
    expect(m2.stderr()).toMatch(/"afterExpiry":true/);
    await w2.stop();
    await m2.stop();
  });

  it('past the grace the node stops with exit 3 and a hint that works, and status says so: leave, then join again', { timeout: slow(90_000) }, async () => {
    const mDir = scratch.path('grace-m');
    const wDir = scratch.path('grace-w');
    const m = await initManager(mDir, ['--cert-expiry', '1h']);
    const w = await joinWorker(wDir, m.token, m.address);
    await w.stop();
    await m.run.stop();
    const m2 = start(['run', '--data-dir', mDir, '--listen-addr', m.address], { env: faked('+31d') });
    const [, address] = await m2.waitFor(/"advertise":"([^"]+)"/);
    const w2 = start(['run', '--data-dir', wDir], { env: faked('+31d') });
    expect(await w2.exit).toBe(3);
    expect(w2.stderr()).toMatch(/error: the certificate expired on .*, longer ago than the renewal grace\nhint: .*'muster leave'.*'muster join --force/);
    const copy = scratch.path('grace-w-copy');
    cpSync(wDir, copy, { recursive: true });
    // status does not promise a renewal that cannot come, and does not say no manager answered while one does.
    const status = await runMuster(['status', '--data-dir', wDir], { env: faked('+31d') });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(
      /^Certificate: +expired .*, longer ago than the renewal grace: it cannot renew; clear the node with 'muster leave' and join again/m,
    );
    expect(status.stdout).not.toMatch(/^Certificate: .*renews by itself/m);
    expect(status.stdout).toMatch(/^Managers: +1 known, 1 reachable$/m);
    expect(status.stdout).toMatch(/^Renewal grace: +720h \(the default; the managers that answered refused this node's certificate\) after expiry$/m);
    const left = await runMuster(['leave', '--data-dir', wDir], { env: faked('+31d') });
    expect(left.code, left.stderr).toBe(0);
    expect(left.stdout).toMatch(/its certificate expired, so the managers were not told/);
    expect(contents(wDir).filter((f) => f !== 'manager')).toEqual(['left.json']);
    const token = (await runMuster(['join-token', '-q', 'worker', '--data-dir', mDir], { env: faked('+31d') })).stdout.trim();
    const rejoined = start(['join', address!, '--data-dir', wDir], { env: { MUSTER_TOKEN: token, ...faked('+31d') } });
    await rejoined.waitFor(/This node joined cluster/);
    await rejoined.stop();
    // join --force over the expired worker itself: its certificate says it is out, whatever a manager would say.
    const forced = start(['join', address!, '--data-dir', copy, '--force'], { env: { MUSTER_TOKEN: token, ...faked('+31d') } });
    await forced.waitFor(/This node joined cluster/);
    expect(forced.stderr()).toMatch(/replacing node [0-9a-z]{25}: its certificate expired at \S+, longer ago than the renewal grace/);
    await forced.stop();
    await m2.stop();
  });
});

describe('clocks that disagree, and servers that are not managers', () => {
  it('a node 30 minutes behind joins a new cluster; 90 minutes behind, join stops at once saying by how much', { timeout: slow(60_000) }, async () => {
    const m = await initManager(scratch.path('skew-m'));
    const behind = await joinWorker(scratch.path('skew-30'), m.token, m.address, { env: faked('-30m') });
    await behind.stop();
    // The manager's certificates are not valid yet by this clock: TLS refuses, and the Date header says by how much.
    const r = await runMuster(['join', m.address, '--data-dir', scratch.path('skew-90')], { env: { MUSTER_TOKEN: m.token, ...faked('-90m') } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /error: the manager at 127\.0\.0\.1:\d+ presented a certificate that is not valid yet by this machine's clock: this machine's clock is behind the manager's by about 1h30m\nhint: set the clock right/,
    );
    expect(r.stderr).not.toMatch(/attempt \d of/);
    await m.run.stop();
  });

  it('a node behind a long-running manager learns it from the certificate it was issued', { timeout: slow(60_000) }, async () => {
    // Founded three hours ago (by the manager's clock), so its own certificate and the root are old enough for the node.
    const dir = scratch.path('skew-old-m');
    const founded = await initManager(dir, [], { env: faked('-3h') });
    await founded.run.stop();
    const m = start(['run', '--data-dir', dir, '--listen-addr', founded.address]);
    await m.waitFor(/manager listening on/);
    const r = await runMuster(['join', founded.address, '--data-dir', scratch.path('skew-old-w')], { env: { MUSTER_TOKEN: founded.token, ...faked('-90m') } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /error: the certificate the manager issued is not valid yet here: this machine's clock is behind the manager's by about 1h30m\nhint: set the clock right/,
    );
    await m.stop();
  });

  it('a server presenting an API-user certificate is named as such, not retried as unreachable', { timeout: slow(60_000) }, async () => {
    const mDir = scratch.path('impostor-m');
    const m = await initManager(mDir);
    const out = scratch.path('impostor-user');
    expect((await runMuster(['ca', 'create-api-certificate', 'mallory', '--out', out, '--data-dir', mDir])).code).toBe(0);
    // openssl serves the cluster root at /v1/ca (so the join pins it) with the user's certificate as its own.
    const www = scratch.path('impostor-www');
    mkdirSync(join(www, 'v1'), { recursive: true });
    copyFileSync(join(mDir, 'certificates', 'root-ca.crt'), join(www, 'v1', 'ca'));
    // With the chain the folder holds (the admin CA under the root), as an impostor would send it.
    const server = spawn(
      'openssl',
      ['s_server', '-accept', '127.0.0.1:0', '-cert', join(out, 'cert.pem'), '-cert_chain', join(out, 'cert.pem'), '-key', join(out, 'key.pem'), '-WWW'],
      { cwd: www, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    try {
      const port = await new Promise<string>((resolve, reject) => {
        let text = '';
        server.stdout.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          const found = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(text);
          if (found) resolve(found[1]!);
        });
        server.on('exit', () => reject(new Error(`openssl s_server exited: ${text}`)));
      });
      const r = await runMuster(['join', `127.0.0.1:${port}`, '--data-dir', scratch.path('impostor-w')], { env: { MUSTER_TOKEN: m.token } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /error: the server at 127\.0\.0\.1:\d+ presented a certificate that may not serve TLS \(an API-user certificate\?\), not a manager certificate/,
      );
      expect(r.stderr).not.toMatch(/attempt \d of/);
    } finally {
      server.kill();
      await m.run.stop();
    }
  });
});

describe('removal', () => {
  it('a removed node stops with exit 3 and a hint; join refuses its dir with a hint to --force; join --force and leave both get it out', {
    timeout: slow(120_000),
  }, async () => {
    const mDir = scratch.path('rm-m');
    const m = await initManager(mDir);
    const w1 = await joinWorker(scratch.path('rm-w1'), m.token, m.address);
    const w2 = await joinWorker(scratch.path('rm-w2'), m.token, m.address);
    const id1 = nodeJson(scratch.path('rm-w1')).nodeId;
    expect((await runMuster(['node', 'rm', '-f', id1.slice(0, 6), '--data-dir', mDir])).code).toBe(0); // a unique ID prefix
    expect(await w1.exit).toBe(3);
    expect(w1.stderr()).toMatch(/hint: clear it with 'muster leave', then join again; 'muster join --force --token-file FILE ADDR' does both/);
    const refused = await runMuster(['join', m.address, '--data-dir', scratch.path('rm-w1')], { env: { MUSTER_TOKEN: m.token } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/hint: .*'muster join --force' replaces it/);
    const forced = start(['join', m.address, '--data-dir', scratch.path('rm-w1'), '--force'], { env: { MUSTER_TOKEN: m.token } });
    await forced.waitFor(/This node joined cluster/);
    expect(nodeJson(scratch.path('rm-w1')).nodeId).not.toBe(id1);
    // The other worker: removed while it was stopped, then leave clears it.
    await w2.stop();
    const id2 = nodeJson(scratch.path('rm-w2')).nodeId;
    expect((await runMuster(['node', 'rm', id2, '--data-dir', mDir])).code).toBe(1); // still active: needs -f
    expect((await runMuster(['node', 'rm', '-f', id2, '--data-dir', mDir])).code).toBe(0);
    const left = await runMuster(['leave', '--data-dir', scratch.path('rm-w2')]);
    expect(left.code, left.stderr).toBe(0);
    expect(left.stdout).toMatch(/the cluster had already removed it/);
    expect(contents(scratch.path('rm-w2'))).toEqual(['left.json']);
    // join --force never destroys a cluster's embedded store: not while its manager runs, nor after.
    const running = await runMuster(['join', m.address, '--data-dir', mDir, '--force'], { env: { MUSTER_TOKEN: m.token } });
    expect(running.code).toBe(1);
    expect(running.stderr).toMatch(/is in use by another muster process/);
    await m.run.stop();
    const destroy = await runMuster(['join', m.address, '--data-dir', mDir, '--force'], { env: { MUSTER_TOKEN: m.token } });
    expect(destroy.code).toBe(1);
    expect(destroy.stderr).toMatch(/holds the embedded store of a cluster; --force would destroy that cluster/);
    await forced.stop();
  });
});

describe('one daemon per data dir, and join --force only over a node that is out', () => {
  it('a running worker: a second daemon and join --force are refused and change no file; SIGKILLed it leaves the dir free; stopped it is still a member; after leave, left.json is enough', {
    timeout: slow(90_000),
  }, async () => {
    const m = await initManager(scratch.path('lock-m'));
    const wDir = scratch.path('lock-w');
    const w = await joinWorker(wDir, m.token, m.address);
    const id = nodeJson(wDir).nodeId;
    // The running node opens its agent socket (muster cert …) once it runs: the files are what they stay from then on.
    await waitUntil('the worker to open its agent socket', () => existsSync(join(wDir, 'agent.sock')));
    const before = hashes(wDir);
    const second = start(['run', '--data-dir', wDir]); // tracked: killed after the file if it were to run
    expect(await second.exit).toBe(1);
    expect(second.stderr()).toContain(
      `error: ${wDir} is in use by another muster process (pid ${w.child.pid})\nhint: stop that process first (kill ${w.child.pid}); a second node on this machine needs its own --data-dir\n`,
    );
    const forced = start(['join', m.address, '--data-dir', wDir, '--force'], { env: { MUSTER_TOKEN: m.token } });
    expect(await forced.exit).toBe(1);
    expect(forced.stderr()).toContain(`error: ${wDir} is in use by another muster process (pid ${w.child.pid})`);
    expect(hashes(wDir)).toEqual(before);

    await w.stop('SIGKILL');
    expect(existsSync(join(wDir, 'muster.lock'))).toBe(true); // nobody removed it
    const again = start(['run', '--data-dir', wDir]);
    await again.waitFor(/certificate valid until/);
    expect(await again.stop()).toBe(0);
    expect(existsSync(join(wDir, 'muster.lock'))).toBe(false);

    // Stopped, but the cluster still counts it.
    const stopped = hashes(wDir);
    const active = start(['join', m.address, '--data-dir', wDir, '--force'], { env: { MUSTER_TOKEN: m.token } });
    expect(await active.exit).toBe(1);
    expect(active.stderr()).toMatch(
      new RegExp(
        `error: node ${id} is still a worker of cluster [0-9a-z]{25}: join --force replaces only a node that was removed or left\\nhint: 'muster leave' here`,
      ),
    );
    expect(hashes(wDir)).toEqual(stopped);

    // Left: left.json says so. With the node's files back (a backup restored), join --force trusts it without asking.
    const backup = scratch.path('lock-w-backup');
    cpSync(wDir, backup, { recursive: true });
    const left = await runMuster(['leave', '--data-dir', wDir]);
    expect(left.code, left.stderr).toBe(0);
    expect(contents(wDir)).toEqual(['left.json']);
    expect(JSON.parse(readFileSync(join(wDir, 'left.json'), 'utf8'))).toMatchObject({ schema: 1, nodeId: id, how: 'left' });
    cpSync(backup, wDir, { recursive: true });
    const rejoined = start(['join', m.address, '--data-dir', wDir, '--force'], { env: { MUSTER_TOKEN: m.token } });
    await rejoined.waitFor(/This node joined cluster/);
    expect(rejoined.stderr()).toMatch(new RegExp(`replacing node ${id}: it left the cluster at \\S+Z`));
    expect(nodeJson(wDir).nodeId).not.toBe(id);
    expect(existsSync(join(wDir, 'left.json'))).toBe(false);
    await rejoined.stop();
    await m.run.stop();
  });

  it('a running manager on etcd: join --force and a second daemon are refused and change no file; stopped, with no manager to ask, join --force keeps its data key', {
    timeout: slow(90_000),
  }, async () => {
    const store = await startEtcd();
    try {
      const mDir = scratch.path('lock-etcd-m');
      const m = await initManager(mDir, ['--store', store.storeFlag]);
      const before = hashes(mDir);
      const forced = start(['join', m.address, '--data-dir', mDir, '--force'], { env: { MUSTER_TOKEN: m.token } });
      expect(await forced.exit).toBe(1);
      expect(forced.stderr()).toContain(`error: ${mDir} is in use by another muster process (pid ${m.run.child.pid})`);
      const second = start(['run', '--data-dir', mDir, '--listen-addr', '127.0.0.1:0']);
      expect(await second.exit).toBe(1);
      expect(second.stderr()).toContain(`is in use by another muster process (pid ${m.run.child.pid})`);
      expect(hashes(mDir)).toEqual(before);

      expect(await m.run.stop()).toBe(0);
      const stopped = hashes(mDir);
      const offline = start(['join', m.address, '--data-dir', mDir, '--force'], { env: { MUSTER_TOKEN: m.token } });
      expect(await offline.exit).toBe(1);
      expect(offline.stderr()).toMatch(
        /error: no manager said whether node [0-9a-z]{25} left the cluster \(.*\); join --force replaces only a node that was removed or left\nhint: try again when a manager answers/,
      );
      expect(hashes(mDir)).toEqual(stopped);
      expect(existsSync(join(mDir, 'manager', 'data.key'))).toBe(true);
    } finally {
      await store.stop();
    }
  });
});

describe('leaving', () => {
  it('a running node that leaves: its daemon exits 0 and says it left; run on the emptied data dir exits 3', { timeout: slow(60_000) }, async () => {
    const m = await initManager(scratch.path('leave-m'));
    const wDir = scratch.path('leave-w');
    const w = await joinWorker(wDir, m.token, m.address);
    const left = await runMuster(['leave', '--data-dir', wDir]);
    expect(left.code, left.stderr).toBe(0);
    expect(await w.exit).toBe(0);
    expect(w.stderr()).toMatch(/this node left the cluster \('muster leave'\); its daemon stops/);
    expect(w.stderr()).not.toMatch(/error:|hint:/);
    // Started again (a unit after a reboot): nothing to run, and no restart can change that.
    const again = await runMuster(['run', '--data-dir', wDir]);
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/error: \S+ holds no node\nhint: /);
    await m.run.stop();
  });
});

describe('secrets off the command line', () => {
  it('a running join keeps no token in /proc/PID/cmdline; --token-file and standard input work', { timeout: slow(60_000) }, async () => {
    const m = await initManager(scratch.path('argv-m'));
    const positional = start(['join', m.token, m.address, '--data-dir', scratch.path('argv-w1')]);
    await positional.waitFor(/This node joined cluster/);
    const cmdline = readFileSync(`/proc/${positional.child.pid}/cmdline`, 'utf8');
    expect(cmdline).not.toContain(m.token);
    expect(cmdline).not.toContain(m.token.split('-')[3]);
    expect(cmdline).toMatch(/muster join <token hidden>/);
    const file = scratch.write('token', `${m.token}\n`);
    const fromFile = start(['join', '--token-file', file, m.address, '--data-dir', scratch.path('argv-w2')]);
    await fromFile.waitFor(/This node joined cluster/);
    expect(readFileSync(`/proc/${fromFile.child.pid}/cmdline`, 'utf8')).not.toContain(m.token);
    const stdin = spawnMuster(['join', '-', m.address, '--data-dir', scratch.path('argv-w3')], { env: FAST, stdin: `${m.token}\n` });
    running.push(stdin);
    await stdin.waitFor(/This node joined cluster/);
    for (const r of [positional, fromFile, stdin]) await r.stop();
  });
});

describe('seeing what is going on', () => {
  it('status says who and where the node is, its certificate and the managers it reaches', { timeout: slow(60_000) }, async () => {
    const dir = scratch.path('st-m');
    const m = await initManager(dir);
    const wDir = scratch.path('st-w');
    const w = await joinWorker(wDir, m.token, m.address);
    const ids = { m: nodeJson(dir).nodeId, w: nodeJson(wDir).nodeId, c: nodeJson(dir).clusterId };
    const normalise = (text: string): string =>
      text
        .replaceAll(scratch.dir, '<SCRATCH>')
        .replaceAll(ids.m, '<MANAGER ID>')
        .replaceAll(ids.w, '<NODE ID>')
        .replaceAll(ids.c, '<CLUSTER ID>')
        .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:<PORT>')
        .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<TIME>')
        .replace(/in \d+ days/g, 'in <N> days');
    const manager = await runMuster(['status', '--data-dir', dir]);
    expect(manager.code, manager.stderr).toBe(0);
    expect(normalise(manager.stdout)).toMatchSnapshot();
    const worker = await runMuster(['status', '--data-dir', wDir]);
    expect(normalise(worker.stdout)).toMatchSnapshot();
    // /healthz: no authentication, nothing secret.
    const health = await curl(['-k', `https://${m.address}/healthz`]);
    expect(health.status).toBe(200);
    expect(health.json()).toEqual({ status: 'ok', role: 'manager', store: 'ok' });
    // With the manager down, the worker warns once and status says unreachable.
    await m.run.stop();
    await w.waitFor(/"level":"warn".*cannot reach any manager .* next attempt at /);
    const down = await runMuster(['status', '--data-dir', wDir]);
    expect(down.code).toBe(1); // as docker info when its daemon is down
    expect(normalise(down.stdout)).toMatch(/Managers: +1 known, 0 reachable\n.*127\.0\.0\.1:<PORT> +unreachable \(MANAGER_UNREACHABLE\)/s);
    expect(w.stderr().match(/cannot reach any manager/g)).toHaveLength(1);
    await w.stop();
  });

  it('admin actions are logged with who did them; a poll interval below 1s is refused', { timeout: slow(60_000) }, async () => {
    const dir = scratch.path('who-m');
    const m = await initManager(dir);
    expect((await runMuster(['join-token', '--rotate', 'worker', '--data-dir', dir])).code).toBe(0);
    await m.run.waitFor(new RegExp(`"role":"worker","by":"${nodeJson(dir).nodeId}","byRole":"manager".*join token rotated`));
    const fast = await runMuster(['run', '--data-dir', dir], { env: { MUSTER_POLL_INTERVAL: '0s' } });
    expect(fast.code).toBe(2);
    expect(fast.stderr).toMatch(/error: MUSTER_POLL_INTERVAL=0s is below the minimum of 1s\nhint: /);
    await m.run.stop();
  });

  it('node commands take self, a unique ID prefix or a hostname; ls has -q and --filter', { timeout: slow(60_000) }, async () => {
    const dir = scratch.path('ref-m');
    const m = await initManager(dir);
    const w = await joinWorker(scratch.path('ref-w'), m.token, m.address);
    const ids = { m: nodeJson(dir).nodeId, w: nodeJson(scratch.path('ref-w')).nodeId };
    expect(JSON.parse((await runMuster(['node', 'inspect', 'self', '--data-dir', dir])).stdout).id).toBe(ids.m);
    expect(JSON.parse((await runMuster(['node', 'inspect', ids.w.slice(0, 5), '--data-dir', dir])).stdout).id).toBe(ids.w);
    const byHost = await runMuster([
      'node',
      'inspect',
      JSON.parse((await runMuster(['node', 'inspect', ids.w, '--data-dir', dir])).stdout).hostname,
      '--data-dir',
      dir,
    ]);
    expect(byHost.code).toBe(1); // both nodes run on this host: the hostname is ambiguous
    expect(byHost.stderr).toMatch(/error: 2 nodes match .*\nhint: give more of the node ID/);
    expect((await runMuster(['node', 'ls', '-q', '--data-dir', dir])).stdout.trim().split('\n').sort()).toEqual([ids.m, ids.w].sort());
    expect((await runMuster(['node', 'ls', '-q', '--filter', 'role=worker', '--data-dir', dir])).stdout).toBe(`${ids.w}\n`);
    expect((await runMuster(['node', 'ls', '-q', '--filter', 'role=manager', '--filter', 'status=ready', '--data-dir', dir])).stdout).toBe(`${ids.m}\n`);
    const bad = await runMuster(['node', 'ls', '--filter', 'colour=blue', '--data-dir', dir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/error: unknown filter 'colour=blue'\nhint: filter on role=…/);
    const unknownOption = await runMuster(['node', 'ls', '--colour', '--data-dir', dir]);
    expect(unknownOption.stderr).toBe("error: unknown option '--colour'\nhint: run the command with --help for its usage\n");
    await w.stop();
    await m.run.stop();
  });
});
