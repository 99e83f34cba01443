/**
 * Secrets stay secret: a whole scenario (init, joins, failed joins, renewals,
 * rotation, an API user, promotion) runs at debug log level, and then every
 * log line is searched for the join tokens, the CA key and the node keys.
 * Every API answer is searched for private keys. File modes are checked, and
 * `run` refuses a data dir or key file that others can read.
 */
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, describe, expect, it } from 'vitest';
import { readCaKey } from '../helpers/store-files.js';
import { runMuster, spawnMuster, type ChildRun } from '../helpers/cli.js';
import { curl, type CurlResult } from '../helpers/curl.js';
import { scratchDir } from '../helpers/openssl.js';
import { ERROR_CATALOGUE } from '../../src/core/errors.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-secrets-');
const children: ChildRun[] = [];
afterAll(async () => {
  await Promise.all(children.map((c) => c.stop('SIGKILL')));
  scratch.cleanup();
});
const ENV = { MUSTER_LOG_LEVEL: 'debug', MUSTER_POLL_INTERVAL: '1s' };
const start = (argv: string[]): ChildRun => {
  const c = spawnMuster(argv, { env: ENV });
  children.push(c);
  return c;
};
/** The base64 body of a PEM key, which is what a leak would contain. */
const keyBody = (pem: string): string[] => pem.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'));

describe('secrets', () => {
  it('never appear in logs or API answers; files are 0600/0700; run refuses loose permissions', { timeout: slow(120_000) }, async () => {
    const m = scratch.path('m');
    const manager = start(['init', '--data-dir', m, '--listen-addr', '127.0.0.1:0', '--log-level', 'debug']);
    const [, worker1Token, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    const logs: string[] = [];
    const answers: CurlResult[] = [];
    /** Keeps an API answer for the search below, once it is the answer expected (a body is searched only with its status checked). */
    const answered = (answer: CurlResult, status: number, code?: string): void => {
      expect(answer.exitCode, answer.stderr).toBe(0);
      expect(answer.status, answer.body).toBe(status);
      if (code !== undefined) expect(answer.json()).toMatchObject({ statusCode: status, code });
      answers.push(answer);
    };
    const tokens = new Set([worker1Token]);
    /** Runs a command against the manager's data dir; its log lines are kept; `exit` is the exit code it must end with. */
    const cli = async (argv: string[], exit = 0) => {
      const r = await runMuster([...argv, '--data-dir', m], { env: ENV });
      logs.push(r.stderr);
      expect(r.code, `muster ${argv.join(' ')}: ${r.stderr}`).toBe(exit);
      return r;
    };
    tokens.add((await cli(['join-token', '-q', 'manager'])).stdout.trim());

    const n1 = start(['join', '--token', worker1Token, address, '--data-dir', scratch.path('n1')]);
    await n1.waitFor(/This node joined cluster/);
    // failed joins: a mistyped token, a garbage token, a bad CSR
    const typo = worker1Token.slice(0, -1) + (worker1Token.endsWith('0') ? '1' : '0');
    const typoJoin = await runMuster(['join', '--token', typo, address, '--data-dir', scratch.path('bad1')], { env: ENV });
    expect(typoJoin.code).not.toBe(0);
    expect(typoJoin.stderr).toMatch(/^error: /m);
    logs.push(typoJoin.stderr);
    const root = join(m, 'certificates', 'root-ca.crt');
    answered(
      await curl([
        '--cacert',
        root,
        '-X',
        'POST',
        '-H',
        'content-type: application/json',
        '--data-binary',
        JSON.stringify({ token: worker1Token, csr: 'junk' }),
        `https://${address}/v1/join`,
      ]),
      400,
      'CSR_NOT_PEM',
    );
    answered(
      await curl([
        '--cacert',
        root,
        '-X',
        'POST',
        '-H',
        'content-type: application/json',
        '--data-binary',
        JSON.stringify({ token: `${worker1Token}x`, csr: 'junk' }),
        `https://${address}/v1/join`,
      ]),
      400,
      'TOKEN_INVALID',
    );

    const rotated = await cli(['join-token', '--rotate', 'worker']);
    const worker2Token = /SWMTKN-1-\S+/.exec(rotated.stdout)![0];
    tokens.add(worker2Token);
    const n2 = start(['join', '--token', worker2Token, address, '--data-dir', scratch.path('n2')]);
    await n2.waitFor(/This node joined cluster/);
    await cli(['update', '--cert-expiry', '1h']);
    await Promise.all([n1.waitFor(/renewed until/), n2.waitFor(/renewed until/)]);
    // A refused promotion (embedded store) and a manager-token join attempt: their errors carry no token either.
    await cli(['node', 'promote', JSON.parse(readFileSync(scratch.path('n2/node.json'), 'utf8')).nodeId as string], ERROR_CATALOGUE.EMBEDDED_STORE.exit);
    const managerJoin = await runMuster(['join', '--token', [...tokens][1]!, address, '--data-dir', scratch.path('m2')], { env: ENV });
    expect(managerJoin.code).not.toBe(0);
    logs.push(managerJoin.stderr);
    await cli(['ca', 'create-api-certificate', 'alice', '--out', scratch.path('alice')]);

    const c = join(m, 'certificates');
    const admin = ['--cacert', root, '--cert', join(c, 'node.crt'), '--key', join(c, 'node.key')];
    for (const path of ['/v1/ca', '/v1/cluster?tokens=1', '/v1/nodes', '/v1/join-tokens', '/v1/nodes/self'])
      answered(await curl([...admin, `https://${address}${path}`]), 200);

    for (const child of [manager, n1, n2]) await child.stop('SIGTERM');
    logs.push(...[manager, n1, n2].map((ch) => ch.stderr()));

    // What must never leak.
    const caKey = await readCaKey(m);
    const nodeKeys = [m, scratch.path('n1'), scratch.path('n2')].map((d) => readFileSync(join(d, 'certificates', 'node.key'), 'utf8'));
    const userKey = readFileSync(scratch.path('alice/key.pem'), 'utf8');
    const secrets = [...tokens, ...[...tokens].map((t) => t.split('-')[3]!), ...[caKey, userKey, ...nodeKeys].flatMap(keyBody)];
    const allLogs = logs.join('\n');
    expect(allLogs.split('\n').length).toBeGreaterThan(20); // the scenario did log
    expect(allLogs).toMatch(/"level":"debug"/); // including debug lines
    for (const secret of secrets) expect(allLogs.includes(secret), `a secret appeared in the logs`).toBe(false);
    expect(allLogs).not.toMatch(/PRIVATE KEY|SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}/);
    for (const answer of answers) expect(answer.body).not.toMatch(/PRIVATE KEY/);
    for (const secret of [caKey, userKey, ...nodeKeys].flatMap(keyBody)) expect(answers.some((a) => a.body.includes(secret))).toBe(false);

    // The embedded store, read through a LevelDB reader (its blocks are compressed: grep on the files proves nothing): no token, key or data key in clear.
    const db = new Level<string, string>(join(m, 'manager', 'db'), { createIfMissing: false });
    const entries: string[] = [];
    for await (const [key, value] of db.iterator()) entries.push(`${key} ${value}`);
    await db.close();
    const dump = entries.join('\n');
    expect(dump).toContain('meta/tokens');
    expect(dump).toContain('meta/ca');
    for (const secret of [
      ...tokens,
      ...[...tokens].map((t) => t.split('-')[3]!),
      ...keyBody(caKey),
      readFileSync(join(m, 'manager', 'data.key'), 'utf8').trim(),
    ]) {
      expect(dump.includes(secret), 'a secret sits in clear in the LevelDB').toBe(false);
    }
    expect(dump).not.toMatch(/PRIVATE KEY|SWMTKN-1-/);

    // Modes.
    for (const d of [m, scratch.path('n1')]) {
      expect(statSync(d).mode & 0o777).toBe(0o700);
      expect(statSync(join(d, 'certificates')).mode & 0o777).toBe(0o700);
      expect(statSync(join(d, 'certificates', 'node.key')).mode & 0o777).toBe(0o600);
    }
    expect(statSync(join(m, 'manager')).mode & 0o777).toBe(0o700);

    // run refuses what others can read, and says how to fix it.
    chmodSync(join(scratch.path('n1'), 'certificates', 'node.key'), 0o644);
    const looseKey = await runMuster(['run', '--data-dir', scratch.path('n1')]);
    expect(looseKey.code).toBe(1);
    expect(looseKey.stderr).toMatch(/error: .*node\.key is readable or writable by other users \(mode 0644\)\nhint: run: chmod 0600 .*node\.key\n/);
    chmodSync(join(scratch.path('n1'), 'certificates', 'node.key'), 0o600);
    chmodSync(scratch.path('n1'), 0o755);
    const looseDir = await runMuster(['run', '--data-dir', scratch.path('n1')]);
    expect(looseDir.code).toBe(1);
    expect(looseDir.stderr).toMatch(/hint: run: chmod 0700 /);
  });
});
