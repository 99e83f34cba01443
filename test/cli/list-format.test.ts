/** The list commands' --format (src/cli/list-format.ts): templates, JSON lines and tables, without a manager. */
import { describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { jsonLinesPrinter, listFields, listPrinter, pagedTablePrinter, parseListFormat, type ListPrinter } from '../../src/cli/list-format.js';

interface Item {
  id: string;
  hostname: string;
  labels: Record<string, string>;
  certNotAfter: string;
  managerStatus?: string;
}

const FIELDS = listFields<Item>(
  {
    ID: { header: 'ID', value: (i) => i.id },
    Hostname: { header: 'HOSTNAME', value: (i) => i.hostname },
    ManagerStatus: { header: 'MANAGER STATUS', value: (i) => i.managerStatus },
  },
  ['id', 'hostname', 'labels', 'certNotAfter', 'managerStatus'],
);
const A: Item = { id: 'a1', hostname: 'alpha', labels: { zone: 'eu', ssd: 'yes' }, certNotAfter: '2027-01-01T00:00:00.000Z', managerStatus: 'Leader' };
const B: Item = { id: 'b2', hostname: 'a-longer-name', labels: {}, certNotAfter: '2027-02-01T00:00:00.000Z' };

/** Prints pages through `printer`, as a list command does. */
const print = <T>(printer: ListPrinter<T>, ...pages: T[][]): string => pages.map((p) => printer.page(p)).join('') + printer.end();
const table = (): ListPrinter<Item> => pagedTablePrinter(['ID', 'HOSTNAME'], (i) => [i.id, i.hostname]);
const render = (format: string, ...pages: Item[][]): string => print(listPrinter(parseListFormat(format, FIELDS), table), ...pages);

function usageError(format: string): MusterError {
  try {
    parseListFormat(format, FIELDS);
  } catch (error) {
    expect(error).toBeInstanceOf(MusterError);
    expect((error as MusterError).exitCode).toBe(2);
    return error as MusterError;
  }
  throw new Error(`--format ${format} was accepted`);
}

describe('--format of the list commands', () => {
  it('fields: the table columns first, then the JSON properties with an upper-case initial; ID once', () => {
    expect(Object.keys(FIELDS)).toEqual(['ID', 'Hostname', 'ManagerStatus', 'Labels', 'CertNotAfter']);
    expect(FIELDS.CertNotAfter!.header).toBe('CERT NOT AFTER');
  });

  it('table (and no --format) is the list own table; json is one object per line; nothing for an empty list', () => {
    expect(parseListFormat(undefined, FIELDS)).toEqual({ kind: 'table' });
    expect(render('table', [A, B])).toBe('ID   HOSTNAME\na1   alpha\nb2   a-longer-name\n');
    expect(render('json', [A], [B])).toBe(`${JSON.stringify(A)}\n${JSON.stringify(B)}\n`);
    expect(render('json', [], [])).toBe('');
    expect(print(jsonLinesPrinter<Item>(), [A])).toBe(`${JSON.stringify(A)}\n`);
  });

  it('a template prints a line per item: {{.Field}}, {{json .}}, {{json .Field}}, labels as k=v,k=v, \\t and \\n as docker', () => {
    expect(render('{{.ID}} {{.Hostname}}', [A, B])).toBe('a1 alpha\nb2 a-longer-name\n');
    expect(render('{{json .}}', [A])).toBe(`${JSON.stringify(A)}\n`);
    expect(render('{{.Labels}}|{{json .Labels}}|{{ .ManagerStatus }}|{{json .ManagerStatus}}', [A, B])).toBe(
      'zone=eu,ssd=yes|{"zone":"eu","ssd":"yes"}|Leader|"Leader"\n|{}||null\n',
    );
    expect(render('{{.ID}}\\t{{.CertNotAfter}}\\n--', [A])).toBe('a1\t2027-01-01T00:00:00.000Z\n--\n');
    expect(render('  {{.ID}}  ', [A])).toBe('a1\n'); // trimmed, as docker's
    expect(render('{{.ID}}', [])).toBe('');
  });

  it('table TEMPLATE prints the fields headers and aligned columns, page after page; the header alone for an empty list', () => {
    expect(render('table {{.ID}}\\t{{.ManagerStatus}}\\t{{.Hostname}}', [A], [B])).toBe(
      'ID   MANAGER STATUS   HOSTNAME\na1   Leader           alpha\nb2                    a-longer-name\n',
    );
    expect(render('table {{.Hostname}}: {{.ID}}', [A])).toBe('HOSTNAME: ID\nalpha: a1\n');
    expect(render('table {{.ID}}\\t{{.Labels}}', [])).toBe('ID   LABELS\n');
  });

  it('refuses, as a usage error that names it, an unknown field, another action, an unclosed {{, and a word that is no format', () => {
    const unknown = usageError('{{.ID}} {{.Nope}}');
    expect(unknown.message).toBe("--format: unknown field .Nope in '{{.ID}} {{.Nope}}'");
    expect(unknown.hint).toBe('fields: .ID .Hostname .ManagerStatus .Labels .CertNotAfter');
    expect(usageError('{{json .nope}}').message).toMatch(/unknown field \.nope/);
    expect(usageError('{{.hostname}}').message).toMatch(/unknown field \.hostname/); // names are case-sensitive, as Go's
    for (const action of ['range .', 'if .ID', '.ID | printf "%s"', 'json', '', 'upper .ID', '.Labels.zone', '.']) {
      expect(usageError(`{{${action}}}`).message).toBe(`--format: {{${action}}} is not a template action muster knows`);
    }
    expect(usageError('{{.ID').message).toBe("--format: '{{' without '}}' in '{{.ID'");
    expect(usageError('yaml').message).toBe("unknown --format 'yaml'");
    expect(usageError('table yaml').message).toBe("unknown --format 'table yaml'");
  });
});
