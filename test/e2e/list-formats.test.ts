/**
 * Docker's output conventions on the list commands, with the real CLI
 * against a real manager and joined nodes: `--format json` as one object
 * per line, `--format` templates (plain and `table`), `--filter label=…`
 * on `node ls`, and `ca certs [--expiring DUR]`.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, runMuster } from '../helpers/cli.js';
import { scratchDir } from '../helpers/openssl.js';
import { processScope } from '../helpers/processes.js';
import type { CertificateView, NodeView, ScopedTokenView } from '../../src/api/schemas.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-lists-');
afterAll(() => scratch.cleanup());
const { start, joinNode } = processScope();

const dir = scratch.path('m');
const alice = scratch.path('alice');
let managerId: string;
let eu: string; // joined with a scoped token labelled rack=r1, and zone=eu ssd=yes of its own
let us: string; // zone=us
let tokenId: string;
let address: string;

/** `muster ARGV --data-dir <manager>`. */
const muster = (argv: string[], env: Record<string, string> = {}) => runMuster([...argv, '--data-dir', dir], { env });
const ids = (text: string): string[] => text.split('\n').filter((line) => line !== '');

beforeAll(async () => {
  const manager = start(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
  const [, token, addr] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
  address = addr;
  managerId = (await muster(['node', 'ls', '-q'])).stdout.trim();
  const scoped = await muster(['join-token', 'create', 'worker', '--label', 'rack=r1', '-q']);
  expect(scoped.code, scoped.stderr).toBe(0);
  await joinNode(scratch.path('eu'), scoped.stdout.trim(), address, ['--label', 'zone=eu', '--label', 'ssd=yes']);
  await joinNode(scratch.path('us'), token, address, ['--label', 'zone=us']);
  const nodes = jsonLines<NodeView>((await muster(['node', 'ls', '--format', 'json'])).stdout);
  eu = nodes.find((n) => n.labels.zone === 'eu')!.id;
  us = nodes.find((n) => n.labels.zone === 'us')!.id;
  tokenId = ids((await muster(['join-token', 'ls', '-q'])).stdout)[0]!;
  expect((await muster(['ca', 'create-api-certificate', 'alice', '--out', alice, '--expiry', '2h'])).code).toBe(0);
}, slow(180_000));

describe('node ls', () => {
  it('--format json writes one object per line, the same as {{json .}}', { timeout: slow(60_000) }, async () => {
    const json = await muster(['node', 'ls', '--format', 'json']);
    expect(json.code, json.stderr).toBe(0);
    const lines = json.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line).toMatch(/^\{"id":"[0-9a-z]{25}".*\}$/);
    expect(jsonLines<NodeView>(json.stdout).map((n) => n.id)).toEqual(ids((await muster(['node', 'ls', '-q'])).stdout));
    const seen = (text: string): string => text.replace(/"lastSeenAt":"[^"]+"/g, ''); // nodes report in meanwhile
    expect(seen((await muster(['node', 'ls', '--format', '{{json .}}'])).stdout)).toBe(seen(json.stdout));
  });

  it('--format templates print fields by the table columns and JSON names; table adds a header', { timeout: slow(60_000) }, async () => {
    const nodes = jsonLines<NodeView>((await muster(['node', 'ls', '--format', 'json'])).stdout);
    const plain = await muster(['node', 'ls', '--format', '{{.ID}} {{.Hostname}} {{.Role}} {{.Self}}']);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toBe(nodes.map((n) => `${n.id} ${n.hostname} ${n.role} ${n.id === managerId}\n`).join(''));

    const labels = await muster([
      'node',
      'ls',
      '--filter',
      `id=${eu}`,
      '--format',
      '{{.Labels}}|{{json .Labels}}|{{.ManagerStatus}}|{{.CertSerial}}\\t{{.Status}}',
    ]);
    const [text, json, managerStatus, rest] = labels.stdout.trimEnd().split('|') as [string, string, string, string];
    expect(text.split(',').sort()).toEqual(['rack=r1', 'ssd=yes', 'zone=eu']);
    expect(JSON.parse(json)).toEqual({ rack: 'r1', ssd: 'yes', zone: 'eu' });
    expect(managerStatus).toBe(''); // a worker has none
    expect(rest).toBe(`${nodes.find((n) => n.id === eu)!.certSerial}\tready`); // \t is a tab, as docker's

    const table = await muster(['node', 'ls', '--format', 'table {{.ID}}\\t{{.Role}}\\t{{.ManagerStatus}}']);
    expect(table.code, table.stderr).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header).toBe(`ID${' '.repeat(26)}ROLE      MANAGER STATUS`);
    expect(rows).toEqual(nodes.map((n) => (n.id === managerId ? `${n.id}   manager   Leader` : `${n.id}   worker`)));
    // An empty list still has its header, as docker's.
    expect((await muster(['node', 'ls', '--filter', 'hostname=nowhere', '--format', 'table {{.ID}}\\t{{.Role}}'])).stdout).toBe('ID   ROLE\n');
    expect((await muster(['node', 'ls', '--filter', 'hostname=nowhere', '--format', '{{.ID}}'])).stdout).toBe('');
  });

  it('a template it cannot print is a usage error (exit 2) naming what is wrong, before any manager is asked', { timeout: slow(60_000) }, async () => {
    const cases: [string, RegExp][] = [
      ['{{.Nope}}', /^error: --format: unknown field \.Nope in '\{\{\.Nope\}\}'\nhint: fields: \.ID \.Hostname \.Role \.Status \.ManagerStatus .* \.Labels /],
      ['{{.id}}', /unknown field \.id/],
      ['{{range .}}{{.ID}}{{end}}', /\{\{range \.\}\} is not a template action muster knows/],
      ['{{.ID', /'\{\{' without '\}\}'/],
      ['yaml', /^error: unknown --format 'yaml'\nhint: use table, json, or a template/],
    ];
    for (const [format, message] of cases) {
      // Nothing listens on 127.0.0.1:1: a refusal after connecting would be exit 1.
      const r = await runMuster([
        'node',
        'ls',
        '--format',
        format,
        '--host',
        '127.0.0.1:1',
        '--tls-cert',
        join(alice, 'cert.pem'),
        '--tls-key',
        join(alice, 'key.pem'),
        '--tls-ca',
        join(alice, 'ca.pem'),
      ]);
      expect(r.code, `${format}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
    }
  });

  it('--filter label=K matches presence, label=K=V the value; all filters must match, page by page', { timeout: slow(60_000) }, async () => {
    const ls = async (filters: string[], pageSize = '500') => {
      const r = await muster(['node', 'ls', '-q', ...filters.flatMap((f) => ['--filter', f])], { MUSTER_PAGE_SIZE: pageSize });
      expect(r.code, r.stderr).toBe(0);
      return ids(r.stdout).sort();
    };
    expect(await ls(['label=zone'])).toEqual([eu, us].sort());
    expect(await ls(['label=zone'], '1')).toEqual([eu, us].sort());
    expect(await ls(['label=zone=eu'])).toEqual([eu]);
    expect(await ls(['label=zone=eu'], '1')).toEqual([eu]);
    expect(await ls(['label=rack=r1', 'label=ssd'])).toEqual([eu]);
    expect(await ls(['label=zone=us', 'label=ssd'])).toEqual([]);
    expect(await ls(['label=zone=e'])).toEqual([]); // the whole value, not a prefix
    expect(await ls(['role=manager'])).toEqual([managerId]);
    expect(await ls(['role=worker', 'label=zone=us'])).toEqual([us]);
    const json = await muster(['node', 'ls', '--filter', 'label=zone=us', '--format', 'json'], { MUSTER_PAGE_SIZE: '1' });
    expect(jsonLines<NodeView>(json.stdout).map((n) => n.id)).toEqual([us]);

    for (const [filter, message] of [
      ['label=', /error: --filter label= names no label\nhint: label=KEY matches nodes that have the label/],
      ['label==eu', /names no label/],
      ['role=boss', /error: --filter role=boss: a role is manager or worker/],
      ['colour=red', /error: unknown filter 'colour=red'\nhint: filter on role=…, status=…, id=…, hostname=…, label=…/],
    ] as const) {
      const r = await muster(['node', 'ls', '--filter', filter]);
      expect(r.code, filter).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe('join-token ls', () => {
  it('--format json writes one object per line; templates and table templates work', { timeout: slow(60_000) }, async () => {
    const json = await muster(['join-token', 'ls', '--format', 'json']);
    expect(json.code, json.stderr).toBe(0);
    expect(json.stdout).toMatch(/^\{[^\n]*\}\n$/);
    expect(jsonLines<ScopedTokenView>(json.stdout)).toEqual([
      expect.objectContaining({ id: tokenId, role: 'worker', labels: { rack: 'r1' }, status: 'active' }),
    ]);
    expect((await muster(['join-token', 'ls', '--format', '{{.ID}} {{.Role}} {{.Labels}} {{.UsesLeft}} {{.CreatedBy}}'])).stdout).toBe(
      `${tokenId} worker rack=r1 unlimited ${managerId}\n`,
    );
    expect((await muster(['join-token', 'ls', '--format', 'table {{.ID}}\\t{{.Labels}}'])).stdout).toBe(
      `ID${' '.repeat(tokenId.length + 1)}LABELS\n${tokenId}   rack=r1\n`,
    );
    const bad = await muster(['join-token', 'ls', '--format', '{{.Secret}}']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown field \.Secret .*\nhint: fields: \.ID \.Role \.Status \.UsesLeft \.Expires \.Labels \.CreatedAt /);
  });
});

describe('ca certs', () => {
  it('lists every issued certificate; --expiring DUR keeps the valid ones that expire within DUR and counts them on stderr', {
    timeout: slow(90_000),
  }, async () => {
    const table = await muster(['ca', 'certs']);
    expect(table.code, table.stderr).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^SERIAL\s+NODE\/USER\s+ROLE\s+KIND\s+STATUS\s+EXPIRES$/);
    expect(rows.find((r) => r.includes(' alice '))).toMatch(/^[0-9A-F]+\s+alice\s+admin\s+user\s+valid\s+in 1 hour$/);
    expect(rows.find((r) => r.includes(` ${managerId} `))).toMatch(/\s+manager\s+init\s+valid\s+in 89 days$/);
    const all = jsonLines<CertificateView>((await muster(['ca', 'certs', '--format', 'json'])).stdout);
    expect(all.map((c) => c.subject).sort()).toEqual(['alice', eu, managerId, us].sort());
    expect((await muster(['ca', 'certs', '-q'])).stdout).toBe(all.map((c) => `${c.serial}\n`).join(''));
    // Pages of one certificate: the same list.
    expect(jsonLines<CertificateView>((await muster(['ca', 'certs', '--format', 'json'], { MUSTER_PAGE_SIZE: '1' })).stdout)).toEqual(all);

    const soon = await muster(['ca', 'certs', '--expiring', '3h', '--format', '{{.Subject}} {{.Status}} {{.NotAfter}}']);
    expect(soon.code, soon.stderr).toBe(0);
    expect(soon.stdout).toBe(`alice valid ${all.find((c) => c.subject === 'alice')!.notAfter}\n`);
    expect(soon.stderr).toBe('1 certificate expires within 3h\n');
    const none = await muster(['ca', 'certs', '--expiring', '1h']);
    expect(none.code).toBe(0);
    expect(none.stdout).toMatch(/^SERIAL\s+NODE\/USER\s+ROLE\s+KIND\s+STATUS\s+EXPIRES\n$/);
    expect(none.stderr).toBe('no certificates expire within 1h\n');
    const many = await muster(['ca', 'certs', '--expiring', '91d', '-q']);
    expect(ids(many.stdout).sort()).toEqual(all.map((c) => c.serial).sort());
    expect(many.stderr).toBe('');

    // As an API user from elsewhere, and the same template as table.
    const remote = await runMuster(['ca', 'certs', '--expiring', '72h', '--format', 'table {{.Subject}}\\t{{.Kind}}'], {
      env: { MUSTER_HOST: `tcp://${address}`, MUSTER_CERT_PATH: alice },
    });
    expect(remote.code, remote.stderr).toBe(0);
    expect(remote.stdout).toBe('NODE/USER   KIND\nalice       user\n');
    expect(remote.stderr).toBe('1 certificate expires within 72h\n');

    const bad = await muster(['ca', 'certs', '--expiring', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: invalid duration "soon"/);
    expect((await muster(['ca', 'certs', '--format', '{{.Nope}}'])).code).toBe(2);

    // A revoked certificate is not one that "expires": it stopped working already.
    expect((await muster(['ca', 'revoke-api-certificate', 'alice'])).code).toBe(0);
    const revoked = await muster(['ca', 'certs', '--expiring', '3h', '--format', 'json']);
    expect(revoked.stdout).toBe('');
    expect(revoked.stderr).toBe('no certificates expire within 3h\n');
    expect(jsonLines<CertificateView>((await muster(['ca', 'certs', '--format', 'json'])).stdout).find((c) => c.subject === 'alice')?.status).toBe('revoked');
  });
});
