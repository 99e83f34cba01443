/**
 * The client commands against a real manager over HTTPS: in-process for the
 * golden output, as child processes for the end-to-end paths.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { createRootCa } from '../../src/pki/ca.js';
import { jsonLines, runInProcess, runMuster, type InProcessRun } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { opensslStatus, scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir('muster-cli-');
const managerDir = scratch.path('manager');
const certs = join(managerDir, 'certificates');
let manager: InProcessRun;
let address: string;
let managerId: string;

/** Runs a client command in-process and returns its exit code and output. */
async function cli(argv: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const run = runInProcess(argv, { env });
  const code = await run.exit;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/** Replaces IDs, tokens, addresses and times so output can be compared with golden text. */
function normalise(text: string): string {
  return text
    .replace(/SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}/g, '<TOKEN>')
    .replaceAll(address, '<ADDR>')
    .replace(/\b[0-9a-z]{25}\b/g, '<ID>')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<TIME>');
}

beforeAll(async () => {
  manager = runInProcess(['init', '--data-dir', managerDir, '--listen-addr', '127.0.0.1:0']);
  const info = await manager.ready;
  address = info.address!;
  managerId = info.nodeId;
});

afterAll(async () => {
  await manager?.stop();
  scratch.cleanup();
});

describe('--help', () => {
  const commands = [
    [],
    ['init'],
    ['join'],
    ['run'],
    ['join-token'],
    ['update'],
    ['node'],
    ['node', 'ls'],
    ['node', 'inspect'],
    ['node', 'rm'],
    ['node', 'promote'],
    ['node', 'demote'],
    ['ca'],
    ['ca', 'create-api-certificate'],
    ['ca', 'revoke-api-certificate'],
    ['leave'],
  ];
  it.each(commands.map((c) => [c.join(' ') || '(none)', c]))('muster %s --help', async (_name, command) => {
    const result = await cli([...(command as string[]), '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^Usage: muster${(command as string[]).length ? ` ${(command as string[]).join(' ')}` : ''} `));
    expect(result.stdout).toMatch(/Options:/);
  });

  it('an unknown command is a usage error (exit 2)', async () => {
    const result = await cli(['frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});

describe('join-token', () => {
  it('prints the Swarm-shaped instructions', async () => {
    const result = await cli(['join-token', 'worker', '--data-dir', managerDir]);
    expect(result.code).toBe(0);
    expect(normalise(result.stdout)).toBe('To add a worker to this cluster, run the following command:\n\n    muster join --token <TOKEN> <ADDR>\n\n');
  });

  it('-q prints the token only', async () => {
    const result = await cli(['join-token', '-q', 'manager', '--data-dir', managerDir]);
    expect(result.stdout).toMatch(/^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}\n$/);
  });

  it('refuses an unknown role with exit 2', async () => {
    const result = await cli(['join-token', 'admin', '--data-dir', managerDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe("error: unknown role 'admin'\nhint: use 'worker' or 'manager'\n");
  });

  it('--rotate says the old token is refused, and it is; the new one works', async () => {
    const old = (await cli(['join-token', '-q', 'worker', '--data-dir', managerDir])).stdout.trim();
    const rotated = await cli(['join-token', '--rotate', 'worker', '--data-dir', managerDir]);
    expect(rotated.code).toBe(0);
    expect(normalise(rotated.stdout)).toBe(
      'Successfully rotated worker join token. The previous worker token is refused from now on.\n\nTo add a worker to this cluster, run the following command:\n\n    muster join --token <TOKEN> <ADDR>\n\n',
    );
    const fresh = /SWMTKN-1-\S+/.exec(rotated.stdout)![0];
    expect(fresh).not.toBe(old);
    const refused = await runMuster(['join', '--token', old, address, '--data-dir', scratch.path('stale-node')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /error: the join token was not accepted\nhint: the token may have been rotated, expired, used up, or belong to another cluster/,
    );
    expect(existsSync(join(scratch.path('stale-node'), 'node.json'))).toBe(false);
    const joined = runInProcess(['join', '--token', fresh, address, '--data-dir', scratch.path('fresh-node')]);
    await joined.ready;
    expect(joined.stdout()).toMatch(/This node joined cluster/);
    expect(await joined.stop()).toBe(0);
  });
});

describe('update --cert-expiry', () => {
  it.each([
    ['4m59s', 'CERT_EXPIRY_TOO_SHORT', 'error: certificate expiry 4m59s is below the minimum of 5m\nhint: use --cert-expiry 5m or longer\n'],
    ['soon', 'DURATION_INVALID', "error: invalid duration \"soon\"\nhint: write durations like '90m', '1h', '2160h' or '90d'\n"],
  ])('refuses %s with exit 2', async (value, _code, stderr) => {
    const result = await cli(['update', '--cert-expiry', value, '--data-dir', managerDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(stderr);
  });

  it.each([['90m'], ['90d'], ['2160h']])('accepts %s', async (value) => {
    const result = await cli(['update', '--cert-expiry', value, '--data-dir', managerDir]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Certificate expiry set to \d+h(\d+m)?\. /);
  });

  it('1h makes the next join get a certificate with NotAfter <= now + 1h', async () => {
    expect((await cli(['update', '--cert-expiry', '1h', '--data-dir', managerDir])).code).toBe(0);
    const token = (await cli(['join-token', '-q', 'worker', '--data-dir', managerDir])).stdout.trim();
    const dir = scratch.path('short-node');
    const joined = runInProcess(['join', '--token', token, address, '--data-dir', dir]);
    await joined.ready;
    const cert = new X509Certificate(readFileSync(join(dir, 'certificates', 'node.crt')));
    expect(Date.parse(cert.validTo)).toBeLessThanOrEqual(Date.now() + 3_600_000);
    await joined.stop();
    expect((await cli(['update', '--cert-expiry', '2160h', '--data-dir', managerDir])).code).toBe(0);
  });
});

describe('--external-ca with a plain http:// URL', () => {
  it('is refused by init, update and ca --rotate with exit 2 and the way out, unless --external-ca-insecure is given', async () => {
    const rootFile = scratch.write('http-ca-root.pem', createRootCa({ clusterId: 'httpca', clock: systemClock, random: systemRandom }).certPem);
    const spec = 'protocol=cfssl,url=http://127.0.0.1:9';
    const initArgv = ['init', '--data-dir', scratch.path('http-ca'), '--listen-addr', '127.0.0.1:0', '--ca-cert', rootFile, '--external-ca', spec];
    for (const argv of [
      initArgv,
      ['update', '--external-ca', spec, '--data-dir', managerDir],
      ['ca', '--rotate', '--ca-cert', rootFile, '--external-ca', spec, '--data-dir', managerDir],
    ]) {
      const refused = await cli(argv);
      expect(refused.code, argv[0]).toBe(2);
      expect(refused.stderr, argv[0]).toMatch(
        /^error: --external-ca url http:\/\/127\.0\.0\.1:9 is plain http: .*\nhint: use https:\/\/.*--external-ca-insecure/,
      );
    }
    expect(existsSync(join(scratch.path('http-ca'), 'node.json'))).toBe(false);
    expect((await cli(['update', '--external-ca-insecure', '--cert-expiry', '2160h', '--data-dir', managerDir])).stderr).toMatch(
      /--external-ca-insecure goes with --external-ca/,
    );
    // With the flag the URL is taken: init goes on to ask that CA for its certificate (nothing listens there) and fails on that.
    const insecure = await cli([...initArgv, '--external-ca-insecure']);
    expect(insecure.code).toBe(1);
    expect(insecure.stderr).toMatch(/external CA/);
    expect(existsSync(join(scratch.path('http-ca'), 'node.json'))).toBe(false);
  });
});

describe('node', () => {
  it('ls shows an aligned table with * on self, and JSON with --format json', async () => {
    const table = await cli(['node', 'ls', '--data-dir', managerDir]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+HOSTNAME\s+ROLE\s+STATUS\s+MANAGER STATUS\s+CERT EXPIRES\s+LAST SEEN$/);
    expect(lines.find((line) => line.startsWith(managerId))).toMatch(
      new RegExp(`^${managerId} \\*\\s+\\S+\\s+manager\\s+ready\\s+Leader\\s+in \\d+ (days|hours|minutes)\\s+\\d+ seconds? ago$`),
    );
    const column = (line: string): number => line.indexOf('ROLE');
    const roleAt = column(lines[0]!);
    for (const line of lines.slice(1)) expect(line.slice(roleAt)).toMatch(/^(manager|worker)/);
    const json = await cli(['node', 'ls', '--format', 'json', '--data-dir', managerDir]);
    const nodes = jsonLines<{ id: string; role: string }>(json.stdout);
    expect(nodes.find((n) => n.id === managerId)).toMatchObject({ id: managerId, role: 'manager' }); // in node-ID order
    expect((await cli(['node', 'ls', '--format', 'yaml', '--data-dir', managerDir])).code).toBe(2);
  });

  it('inspect prints one node as JSON; an unknown one is an error with a hint', async () => {
    const node = JSON.parse((await cli(['node', 'inspect', managerId, '--data-dir', managerDir])).stdout) as { id: string };
    expect(node.id).toBe(managerId);
    const missing = await cli(['node', 'inspect', '0000000000000000000000000', '--data-dir', managerDir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("error: no node 0000000000000000000000000\nhint: list the nodes with 'muster node ls'\n");
  });

  it('rm of a node that still renews needs -f; the last manager cannot be demoted or removed', async () => {
    const token = (await cli(['join-token', '-q', 'worker', '--data-dir', managerDir])).stdout.trim();
    const dir = scratch.path('rm-node');
    const worker = runInProcess(['join', '--token', token, address, '--data-dir', dir]);
    const { nodeId } = await worker.ready;
    const refused = await cli(['node', 'rm', nodeId, '--data-dir', managerDir]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: node \S+ is still active \(last seen .*\)\nhint: use 'muster node rm -f ID' to remove it anyway\n$/);
    const forced = await cli(['node', 'rm', '-f', nodeId, '--data-dir', managerDir]);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toBe(`Node ${nodeId} removed; its certificate is refused from now on.\n`);
    // its certificate is refused from then on
    const c = join(dir, 'certificates');
    const self = await curl([
      '--cacert',
      join(c, 'root-ca.crt'),
      '--cert',
      join(c, 'node.crt'),
      '--key',
      join(c, 'node.key'),
      `https://${address}/v1/nodes/self`,
    ]);
    expect(self.status).toBe(403);
    await worker.stop();
    for (const argv of [
      ['node', 'demote', managerId],
      ['node', 'rm', '-f', managerId],
    ]) {
      const last = await cli([...argv, '--data-dir', managerDir]);
      expect(last.code).toBe(1);
      expect(last.stderr).toMatch(
        /error: cannot (demote|remove) \S+: it is the last serving manager of the cluster\nhint: a cluster on the embedded store has exactly one manager\n/,
      );
    }
  });
});

describe('ca create-api-certificate and remote use', () => {
  const out = scratch.path('alice');
  let aliceCert: string;
  let aliceKey: string;

  beforeAll(async () => {
    const result = await runMuster(['ca', 'create-api-certificate', 'alice', '--out', out, '--data-dir', managerDir]);
    expect(result.code, result.stderr).toBe(0);
    aliceCert = join(out, 'cert.pem');
    aliceKey = join(out, 'key.pem');
    expect(normalise(result.stdout).replaceAll(out, '<OUT>')).toBe(
      'Created <OUT>/{ca.pem,cert.pem,key.pem} for API user alice, valid until <TIME>.\n' +
        'Give the folder to the user over a secure channel (scp, sftp) and delete your copy; anyone with key.pem can administer the cluster.\n\n' +
        'Use it with muster:\n\n    export MUSTER_HOST=<ADDR> MUSTER_CERT_PATH=<OUT>\n    muster node ls\n\n' +
        'or with curl:\n\n    curl --cacert <OUT>/ca.pem --cert <OUT>/cert.pem --key <OUT>/key.pem https://<ADDR>/v1/nodes\n\n',
    );
  });

  it('writes the key 0600 in a 0700 folder, and a certificate with OU=swarm-admin, clientAuth only, and a SAN naming the user', () => {
    expect(statSync(aliceKey).mode & 0o777).toBe(0o600);
    expect(statSync(out).mode & 0o777).toBe(0o700);
    const cert = new X509Certificate(readFileSync(aliceCert));
    expect(cert.subject).toMatch(/OU=swarm-admin\nCN=alice$/);
    expect(cert.subjectAltName).toBe('DNS:alice');
  });

  it('MUSTER_HOST and MUSTER_CERT_PATH work straight after, as printed', async () => {
    const result = await runMuster(['node', 'ls'], { env: { MUSTER_HOST: address, MUSTER_CERT_PATH: out, MUSTER_DATA_DIR: scratch.path('nowhere') } });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^ID\s+HOSTNAME/);
  });

  it('refuses to overwrite an existing key, and writes to ./NAME by default with --expiry', async () => {
    const again = await runMuster(['ca', 'create-api-certificate', 'alice', '--out', out, '--data-dir', managerDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/error: \S+key\.pem already exists; it was not replaced\nhint: pick another --out/);
    const cwd = scratch.path('cwd');
    mkdirSync(cwd);
    const bob = await runMuster(['ca', 'create-api-certificate', 'bob', '--expiry', '2h', '--data-dir', managerDir], { cwd });
    expect(bob.code, bob.stderr).toBe(0);
    const cert = new X509Certificate(readFileSync(join(cwd, 'bob', 'cert.pem')));
    expect(Date.parse(cert.validTo)).toBeLessThanOrEqual(Date.now() + 2 * 3_600_000 + 1_000);
    expect((await runMuster(['ca', 'create-api-certificate', 'eve', '--expiry', '4m', '--data-dir', managerDir], { cwd })).code).toBe(2);
  });

  it("curl with alice's certificate lists the nodes; with a worker's it gets 403", async () => {
    const listed = await curl(['--cacert', join(out, 'ca.pem'), '--cert', aliceCert, '--key', aliceKey, `https://${address}/v1/nodes`]);
    expect(listed.status).toBe(200);
    expect((listed.json().nodes as unknown[]).length).toBeGreaterThan(0);
    const token = (await cli(['join-token', '-q', 'worker', '--data-dir', managerDir])).stdout.trim();
    const dir = scratch.path('curl-worker');
    const worker = runInProcess(['join', '--token', token, address, '--data-dir', dir]);
    await worker.ready;
    const c = join(dir, 'certificates');
    const forbidden = await curl([
      '--cacert',
      join(c, 'root-ca.crt'),
      '--cert',
      join(c, 'node.crt'),
      '--key',
      join(c, 'node.key'),
      `https://${address}/v1/nodes`,
    ]);
    expect(forbidden.status).toBe(403);
    await worker.stop();
  });

  it("alice's certificate cannot serve as a server certificate", () => {
    // cert.pem holds the admin CA after the leaf: given as the chain, the purpose is what openssl refuses.
    const check = opensslStatus(['verify', '-CAfile', join(out, 'ca.pem'), '-untrusted', aliceCert, '-purpose', 'sslserver', aliceCert]);
    expect(check.status).not.toBe(0);
    expect(check.output).toMatch(/error \d+ at 0 depth lookup: .*purpose/i);
  });

  it('client commands work remotely with --host and --tls-*', async () => {
    const result = await runMuster(['node', 'ls', '--host', address, '--tls-cert', aliceCert, '--tls-key', aliceKey, '--tls-ca', join(out, 'ca.pem')]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^ID\s+HOSTNAME/);
  });

  it("revoke-api-certificate makes the manager refuse alice's certificate", async () => {
    const other = scratch.path('carol');
    expect((await runMuster(['ca', 'create-api-certificate', 'carol', '--out', other, '--data-dir', managerDir])).code).toBe(0);
    const tls = ['--cacert', join(other, 'ca.pem'), '--cert', join(other, 'cert.pem'), '--key', join(other, 'key.pem')];
    expect((await curl([...tls, `https://${address}/v1/nodes`])).status).toBe(200);
    const revoked = await cli(['ca', 'revoke-api-certificate', 'carol', '--data-dir', managerDir]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toBe('Revoked 1 certificate of API user carol; the manager refuses it from now on.\n');
    const refused = await curl([...tls, `https://${address}/v1/nodes`]);
    expect(refused.status).toBe(403);
    expect(refused.json().code).toBe('CERT_REVOKED');
    const unknown = await cli(['ca', 'revoke-api-certificate', 'nobody', '--data-dir', managerDir]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('error: no API-user certificate named nobody\n');
  });

  it('--host without a client certificate explains what is missing', async () => {
    const result = await runMuster(['node', 'ls', '--host', address], { env: { MUSTER_CERT_PATH: '' } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: talking to \S+ needs a client certificate\nhint: pass --tls-cert, --tls-key and --tls-ca, or set MUSTER_CERT_PATH/);
  });

  it('a manager that is not running is reported plainly', async () => {
    const result = await runMuster(['node', 'ls', '--host', '127.0.0.1:1', '--tls-cert', aliceCert, '--tls-key', aliceKey, '--tls-ca', join(out, 'ca.pem')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^error: cannot reach the manager at 127\.0\.0\.1:1: ECONNREFUSED\nhint: check the address and that the manager is running\n$/,
    );
  });
});

describe('leave', () => {
  it('a worker leaves: marked removed on the manager, local state deleted', async () => {
    const token = (await cli(['join-token', '-q', 'worker', '--data-dir', managerDir])).stdout.trim();
    const dir = scratch.path('leaver');
    const worker = runInProcess(['join', '--token', token, address, '--data-dir', dir]);
    const { nodeId } = await worker.ready;
    await worker.stop();
    const left = await runMuster(['leave', '--data-dir', dir]);
    expect(left.code, left.stderr).toBe(0);
    expect(left.stdout).toBe(
      `Node ${nodeId} left the cluster (the managers marked it removed); its key, certificates and node.json were deleted from ${dir}.\n`,
    );
    expect(existsSync(join(dir, 'certificates'))).toBe(false);
    expect(existsSync(join(dir, 'node.json'))).toBe(false);
    const node = JSON.parse((await cli(['node', 'inspect', nodeId, '--data-dir', managerDir])).stdout) as { status: string };
    expect(node.status).toBe('removed');
  });

  it('a manager needs --force (exit 1: not a usage error), and the last manager cannot leave', async () => {
    const refused = await cli(['leave', '--data-dir', managerDir]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: this node \(\S+\) is a manager\nhint: use 'muster leave --force' to leave anyway\n$/);
    const last = await cli(['leave', '--force', '--data-dir', managerDir]);
    expect(last.code).toBe(1);
    expect(last.stderr).toMatch(/it is the last serving manager of the cluster/);
    expect(existsSync(join(certs, 'node.key'))).toBe(true);
  });
});

describe('node ls, page by page', () => {
  it('with pages of one node (MUSTER_PAGE_SIZE=1) still shows every node: the table, -q, --filter, --all and JSON', async () => {
    // Nodes of its own, so it passes alone: three workers joined, two of them removed.
    const token = (await cli(['join-token', '-q', 'worker', '--data-dir', managerDir])).stdout.trim();
    const workers: { run: InProcessRun; id: string }[] = [];
    for (const name of ['page-a', 'page-b', 'page-c']) {
      const run = runInProcess(['join', '--token', token, address, '--data-dir', scratch.path(name)]);
      workers.push({ run, id: (await run.ready).nodeId });
    }
    for (const w of workers.slice(0, 2)) expect((await cli(['node', 'rm', '-f', w.id, '--data-dir', managerDir])).code).toBe(0);
    await Promise.all(workers.map((w) => w.run.stop()));
    const ls = async (args: string[], pageSize?: string) =>
      cli(['node', 'ls', ...args, '--data-dir', managerDir], pageSize === undefined ? {} : { MUSTER_PAGE_SIZE: pageSize });
    const ids = (await ls(['-q', '--all'])).stdout.trim().split('\n');
    expect(ids.length).toBeGreaterThanOrEqual(4); // the manager, the joined nodes, and the removed ones
    expect(ids).toEqual([...ids].sort());
    expect((await ls(['-q', '--all'], '1')).stdout).toBe(`${ids.join('\n')}\n`);
    const live = (await ls(['-q'], '1')).stdout.trim().split('\n');
    const removed = (await ls(['-q', '--filter', 'status=removed'], '1')).stdout.trim().split('\n');
    expect([...live, ...removed].sort()).toEqual(ids);
    expect(removed.length).toBeGreaterThanOrEqual(2);

    const table = (await ls(['--all'], '1')).stdout.trimEnd().split('\n');
    expect(table.filter((line) => line.startsWith('ID '))).toHaveLength(1);
    expect(table.slice(1).map((line) => line.slice(0, 25))).toEqual(ids);
    const roleAt = table[0]!.indexOf('ROLE');
    for (const line of table.slice(1)) expect(line.slice(roleAt)).toMatch(/^(manager|worker)/); // later pages line up with the first

    const json = await ls(['--all', '--format', 'json'], '1');
    expect(jsonLines<{ id: string }>(json.stdout).map((n) => n.id)).toEqual(ids);
    expect(json.stdout).toMatch(/^\{"id":"[0-9a-z]{25}",[^\n]*\}\n\{"id":/); // one object per line, as docker's --format json
    expect((await ls(['--filter', 'hostname=nowhere', '--format', 'json'], '2')).stdout).toBe('');
  });

  it('refuses a MUSTER_PAGE_SIZE that is not 1 to 1000', async () => {
    for (const size of ['0', '1001', 'ten']) {
      const result = await cli(['node', 'ls', '--data-dir', managerDir], { MUSTER_PAGE_SIZE: size });
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(`error: MUSTER_PAGE_SIZE=${size} is not a page size\nhint: set it to a whole number from 1 to 1000 (default 500)\n`);
    }
  });
});
