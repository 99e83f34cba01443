/**
 * Autolock with real processes (issue 19): a locked manager's data dir,
 * copied elsewhere, holds no private key (neither PEM nor the DER bytes of
 * the node key, the CA key or the data key); a restart comes up locked
 * (/v1/ca and /healthz only), refuses and counts a wrong key, and serves
 * after `muster unlock`; rotating the unlock key, and turning autolock on
 * and off, with SIGKILL at each step, always leave a manager that one of the
 * keys the operator was given opens; on etcd, a second manager restarted
 * while autolocked needs its own unlock, and its etcd client key is sealed.
 */
import { cpSync, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseUnlockKey, unlockKeyId } from '../../src/token/unlock-key.js';
import { runMuster, type ChildRun } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { freePort, startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { FAST_ENV, processScope } from '../helpers/processes.js';
import { corpRoot, scratchDir } from '../helpers/openssl.js';
import { runInTerminal } from '../helpers/terminal.js';
import { slow } from '../helpers/slowdown.js';
import { story } from '../helpers/story.js';

const scratch = scratchDir('muster-lock-');
let etcd: EtcdCluster | undefined;
afterAll(async () => {
  await etcd?.stop();
  scratch.cleanup();
});
const { start, joinNode } = processScope(FAST_ENV);

/** Every file under `dir`, with its bytes. */
function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    const stat = statSync(path);
    if (stat.isDirectory()) return filesUnder(path);
    return stat.isFile() ? [{ path, bytes: readFileSync(path) }] : [];
  });
}

/** The PKCS#8 DER of a PEM key. */
const derOf = (pem: string): Buffer => createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });

const keyIdsOf = (dir: string): string[] => {
  const text = readFileSync(join(dir, 'manager', 'data.key'), 'utf8');
  return text.startsWith('{') ? (JSON.parse(text) as { wraps: { keyId: string }[] }).wraps.map((w) => w.keyId) : [];
};

async function started(run: ChildRun): Promise<ChildRun> {
  await run.waitFor(/manager listening on|this manager is locked/);
  return run;
}

describe('autolock on the embedded store', () => {
  const { step } = story();
  const m = scratch.path('m');
  let port = 0;
  let address = '';
  let token = '';
  let unlockKey = '';

  step(
    'a locked data dir, copied, reveals no private key; a restart is locked until muster unlock, and a wrong key is refused and counted',
    {
      timeout: slow(120_000),
    },
    async () => {
      // A root we made, so we know the CA key's bytes.
      const caKey = scratch.path('ca.key');
      const caCert = scratch.path('ca.pem');
      corpRoot(caKey, caCert);
      port = await freePort();
      const first = start(['init', '--data-dir', m, '--listen-addr', `127.0.0.1:${port}`, '--ca-cert', caCert, '--ca-key', caKey]);
      [, token, address] = (await first.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
      const nodeKeyDer = derOf(readFileSync(join(m, 'certificates', 'node.key'), 'utf8'));
      const dataKeyText = readFileSync(join(m, 'manager', 'data.key'), 'utf8').trim();
      const secrets = {
        'node key DER': nodeKeyDer,
        'CA key DER': derOf(readFileSync(caKey, 'utf8')),
        'data key': Buffer.from(dataKeyText, 'base64'),
        'data key text': Buffer.from(dataKeyText),
      };

      const on = await runMuster(['update', '--autolock=true', '--data-dir', m]);
      expect(on.code, on.stderr).toBe(0);
      unlockKey = /^ {4}(SWMKEY-1-\S+)$/m.exec(on.stdout)![1]!;
      expect(on.stdout).toContain('To unlock a manager after it restarts, run the `muster unlock`');
      expect((await runMuster(['unlock-key', '-q', '--data-dir', m])).stdout.trim()).toBe(unlockKey);
      expect(await first.stop('SIGTERM')).toBe(0);

      const copy = scratch.path('stolen');
      cpSync(m, copy, { recursive: true });
      const files = filesUnder(copy);
      expect(files.length).toBeGreaterThan(5);
      for (const { path, bytes } of files) {
        expect(bytes.includes('PRIVATE KEY'), path).toBe(false);
        for (const [what, secret] of Object.entries(secrets)) expect(bytes.includes(secret), `${what} in ${path}`).toBe(false);
      }
      // The unlock key itself is nowhere either, nor in the process's logs.
      for (const { path, bytes } of files) expect(bytes.includes(unlockKey), path).toBe(false);
      expect(first.stdout() + first.stderr()).not.toContain(unlockKey);

      // Restart: locked. Only /v1/ca and /healthz answer.
      const locked = await started(start(['run', '--data-dir', m]));
      await locked.waitFor(/this manager is locked/);
      const ca = await curl(['-k', `https://${address}/v1/ca`]);
      expect(ca.status).toBe(200);
      expect(ca.body).toBe(readFileSync(join(m, 'certificates', 'root-ca.crt'), 'utf8'));
      const health = await curl(['-k', `https://${address}/healthz`]);
      // Locked, and its store is fine: a locked manager does not send anyone chasing a store problem.
      expect([health.status, health.json()]).toEqual([503, { status: 'locked', role: 'manager', store: 'ok', locked: true, unlockFailures: 0 }]);
      const nodes = await curl(['-k', `https://${address}/v1/nodes`]);
      expect([nodes.status, nodes.json().code]).toEqual([503, 'MANAGER_LOCKED']);
      // Never over the network: the key would go to a server nobody has verified.
      const remote = await curl(
        ['-k', '-X', 'POST', '-H', 'content-type: application/json', '-d', '@-', `https://${address}/v1/unlock`],
        JSON.stringify({ unlockKey }),
      );
      expect([remote.status, remote.json().code]).toEqual([403, 'AUTH_FORBIDDEN']);
      const ls = await runMuster(['node', 'ls', '--data-dir', m]);
      expect(ls.code).toBe(1);
      expect(ls.stderr).toMatch(/error: this manager is locked/);
      expect((await runMuster(['status', '--data-dir', m])).stdout).toMatch(/Autolock: +on: this manager is locked; run 'muster unlock'/);

      // A wrong key and a malformed one: refused, counted, nothing unlocked.
      const wrong = await runMuster(['unlock', '--data-dir', m], { stdin: `SWMKEY-1-${Buffer.alloc(32, 7).toString('base64').replace(/=+$/, '')}\n` });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/error: the unlock key does not unlock this manager/);
      const malformed = await runMuster(['unlock', '--data-dir', m], { stdin: 'SWMKEY-1-nope\n' });
      expect(malformed.code).toBe(2);
      expect((await curl(['-k', `https://${address}/healthz`])).json().unlockFailures).toBe(1);
      // Bad bodies on the socket are 400s with a code, never a crash.
      for (const body of ['{"nope":1}', 'not json', JSON.stringify({ unlockKey: 'x'.repeat(500) })]) {
        const bad = await curl(
          ['--unix-socket', join(m, 'manager', 'control.sock'), '-X', 'POST', '-H', 'content-type: application/json', '-d', '@-', 'http://localhost/v1/unlock'],
          body,
        );
        expect([bad.status, bad.json().code], body).toEqual([400, 'BODY_INVALID']);
      }
      await locked.waitFor(/a wrong unlock key was offered \(1 so far\)/);

      // The right key, from the environment: once unlock says it serves, its port answers; a worker joins.
      const right = await runMuster(['unlock', '--data-dir', m], { env: { MUSTER_UNLOCK_KEY: unlockKey } });
      expect(right.code, right.stderr).toBe(0);
      expect(right.stdout).toBe('Manager unlocked: it serves.\n');
      const serving = await curl(['-k', `https://${address}/healthz`]);
      expect(serving.status).toBe(200);
      expect(serving.json()).toEqual({ status: 'ok', role: 'manager', store: 'ok' });
      await locked.waitFor(/manager listening on/);
      expect((await runMuster(['node', 'ls', '-q', '--data-dir', m])).code).toBe(0);
      await joinNode(scratch.path('w1'), token, address);
      expect(locked.stdout() + locked.stderr()).not.toContain(unlockKey);
      expect(await locked.stop('SIGTERM')).toBe(0);
    },
  );

  step('muster unlock on a terminal: a prompt that does not echo the key, Enter submits (no Ctrl-D)', { timeout: slow(90_000) }, async () => {
    const locked = await started(start(['run', '--data-dir', m]));
    await locked.waitFor(/this manager is locked/);
    const terminal = runInTerminal(['unlock', '--data-dir', m]);
    try {
      await terminal.waitFor(/Enter the unlock key \(SWMKEY-1-…\)[^:]*: $/);
      terminal.type(`${unlockKey}\r`);
      await terminal.waitFor(/Manager unlocked: it serves\./, slow(30_000));
      expect(await terminal.exit).toBe(0);
    } finally {
      terminal.kill();
    }
    expect(terminal.screen()).not.toContain(unlockKey);
    expect(terminal.screen()).not.toContain(unlockKey.slice(9, 20)); // not a part of it either
    expect(terminal.screen()).not.toMatch(/Ctrl-D/);
    expect((await curl(['-k', `https://${address}/healthz`])).status).toBe(200);
    // Piped standard input keeps working (the key from a password manager, a file).
    expect(await locked.stop('SIGTERM')).toBe(0);
    const again = await started(start(['run', '--data-dir', m]));
    await again.waitFor(/this manager is locked/);
    const piped = await runMuster(['unlock', '--data-dir', m], { stdin: `${unlockKey}\n` });
    expect(piped.code, piped.stderr).toBe(0);
    expect(await again.stop('SIGTERM')).toBe(0);
  });

  /**
   * One change with the manager killed (SIGKILL, from inside) at `failpoint`;
   * then restarts until it serves, unlocking with the keys the operator was
   * given, and checks it ends where the store says.
   */
  async function killedDuring(failpoint: string, change: string[], known: string[]): Promise<string[]> {
    const run = await started(start(['run', '--data-dir', m], { MUSTER_UNLOCK_KEY: known.at(-1)!, MUSTER_FAILPOINTS: failpoint }));
    await run.waitFor(/manager listening on/);
    const result = await runMuster([...change, '--data-dir', m]);
    expect(await run.exit).toBeNull(); // SIGKILLed at the failpoint
    const printed = /(SWMKEY-1-\S+)/.exec(result.stdout)?.[1];
    const keys = printed === undefined ? known : [...known, printed];
    // Restart: locked, or not, as data.key says; one of the keys opens it.
    const wrappedUnder = keyIdsOf(m);
    const again = await started(start(['run', '--data-dir', m]));
    if (wrappedUnder.length > 0) {
      await again.waitFor(/this manager is locked/);
      const opens = keys.filter((key) => wrappedUnder.includes(unlockKeyId(parseUnlockKey(key))));
      expect(opens.length, `${failpoint}: no key the operator holds opens the manager`).toBeGreaterThan(0);
      const r = await runMuster(['unlock', '--data-dir', m], { stdin: `${opens[0]}\n` });
      expect(r.code, r.stderr).toBe(0);
      await again.waitFor(/manager listening on/);
    } else {
      await again.waitFor(/manager listening on/);
    }
    // It serves, and its files follow the store: wrapped under the store's key (first), or in clear.
    expect((await runMuster(['node', 'ls', '-q', '--data-dir', m])).code).toBe(0);
    const shown = await runMuster(['unlock-key', '-q', '--data-dir', m]);
    if (shown.code === 0) {
      const current = shown.stdout.trim();
      await expect.poll(() => keyIdsOf(m)[0]).toBe(unlockKeyId(parseUnlockKey(current)));
      expect(readFileSync(join(m, 'certificates', 'node.key'), 'utf8')).not.toContain('PRIVATE KEY');
      expect(await again.stop('SIGTERM')).toBe(0);
      return [...new Set([...keys, current])];
    }
    expect(shown.stderr).toMatch(/autolock is off/);
    await expect.poll(() => keyIdsOf(m)).toEqual([]);
    await expect.poll(() => readFileSync(join(m, 'certificates', 'node.key'), 'utf8')).toContain('PRIVATE KEY');
    expect(await again.stop('SIGTERM')).toBe(0);
    return keys;
  }

  step(
    'rotating the unlock key, and turning autolock off and on, with SIGKILL at each step: one of the given keys always opens the manager',
    {
      timeout: slow(360_000),
    },
    async () => {
      let keys = [unlockKey];
      for (const failpoint of ['unlock-key-rotate:wrapped', 'unlock-key-rotate:committed']) {
        keys = await killedDuring(failpoint, ['unlock-key', '--rotate', '-q'], keys);
      }
      expect(keys.length).toBeGreaterThan(1); // the committed rotation's key came from `unlock-key` after the restart
      for (const failpoint of ['autolock:committed', 'autolock:data-key', 'autolock:node-key']) {
        keys = await killedDuring(failpoint, ['update', '--autolock=false'], keys);
        keys = await killedDuring(failpoint, ['update', '--autolock=true'], keys);
      }
      // The previous key keeps opening the manager for the window after a rotation; another key never does.
      const run = await started(start(['run', '--data-dir', m], { MUSTER_UNLOCK_KEY: keys.at(-1)! }));
      await run.waitFor(/manager listening on/);
      const before = (await runMuster(['unlock-key', '-q', '--data-dir', m])).stdout.trim();
      const rotated = await runMuster(['unlock-key', '--rotate', '-q', '--data-dir', m]);
      expect(rotated.code, rotated.stderr).toBe(0);
      const after = rotated.stdout.trim();
      expect(keyIdsOf(m)).toEqual([unlockKeyId(parseUnlockKey(after)), unlockKeyId(parseUnlockKey(before))]);
      expect(await run.stop('SIGTERM')).toBe(0);
      const restarted = await started(start(['run', '--data-dir', m]));
      expect((await runMuster(['unlock', '--data-dir', m], { stdin: `${keys[0]}\n` })).code).toBe(keys[0] === before || keys[0] === after ? 0 : 1);
      expect((await runMuster(['unlock', '--data-dir', m], { stdin: `${before}\n` })).code).toBe(0);
      await restarted.waitFor(/manager listening on/);
      expect((await runMuster(['unlock-key', '-q', '--data-dir', m])).stdout.trim()).toBe(after);
      expect(await restarted.stop('SIGTERM')).toBe(0);
    },
  );
});

describe('autolock with two managers on etcd', () => {
  it('init --autolock; the second manager wraps its files too, seals its etcd client key, and restarted it needs its own unlock', {
    timeout: slow(120_000),
  }, async () => {
    etcd = await startEtcd({ tls: true });
    const tls = etcd.tls!;
    const f = scratch.path('e-f');
    const founder = start([
      'init',
      '--autolock',
      '--data-dir',
      f,
      '--listen-addr',
      '127.0.0.1:0',
      '--store',
      etcd.storeFlag,
      '--store-cacert',
      tls.caFile,
      '--store-cert',
      tls.clientCert,
      '--store-key',
      tls.clientKey,
    ]);
    const [, key] = (await founder.waitFor(/^ {4}(SWMKEY-1-\S+)$/m)) as unknown as [string, string];
    const address = (await founder.waitFor(/muster join --token SWMTKN-1-\S+ (127\.0\.0\.1:\d+)/))[1]!;
    const managerToken = (await runMuster(['join-token', '-q', 'manager', '--data-dir', f])).stdout.trim();
    const m2 = scratch.path('e-m2');
    const second = await joinNode(m2, managerToken, address, ['--listen-addr', '127.0.0.1:0']);
    await second.waitFor(/manager listening on/);
    for (const dir of [f, m2]) {
      await expect.poll(() => keyIdsOf(dir)).toEqual([unlockKeyId(parseUnlockKey(key))]);
      for (const { path, bytes } of filesUnder(dir)) expect(bytes.includes('PRIVATE KEY'), path).toBe(false);
      expect(JSON.parse(readFileSync(join(dir, 'manager', 'store.json'), 'utf8'))).toMatchObject({ kind: 'etcd', keySealed: { alg: 'A256GCM' } });
    }
    // Restart the second manager while the founder serves: it is locked until it is unlocked itself.
    expect(await second.stop('SIGTERM')).toBe(0);
    const back = start(['run', '--data-dir', m2]);
    await back.waitFor(/this manager is locked/);
    expect((await runMuster(['node', 'ls', '-q', '--data-dir', f])).code).toBe(0); // the founder serves on
    expect((await runMuster(['node', 'ls', '-q', '--data-dir', m2])).code).toBe(1);
    expect((await runMuster(['unlock', '--data-dir', m2], { env: { MUSTER_UNLOCK_KEY: key } })).code).toBe(0);
    await back.waitFor(/manager listening on/);
    const ls = await runMuster(['node', 'ls', '--data-dir', m2]);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.match(/Leader|Reachable/g)).toHaveLength(2);
    // Demoted, it keeps its identity (node.key back in clear) and nothing of the cluster's.
    const m2Id = (JSON.parse(readFileSync(join(m2, 'node.json'), 'utf8')) as { nodeId: string }).nodeId;
    expect((await runMuster(['node', 'demote', m2Id, '--data-dir', f])).code).toBe(0);
    await back.waitFor(/demoted: this node no longer serves as a manager/, slow(30_000));
    expect(readFileSync(join(m2, 'certificates', 'node.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(existsSync(join(m2, 'manager', 'data.key'))).toBe(false);
  });
});
