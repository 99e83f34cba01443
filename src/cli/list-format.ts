/**
 * `--format` of the list commands, as docker's: `table` (the default),
 * `json` (one object per line, what docker's `--format json` and
 * `{{json .}}` print), or a template such as `'{{.ID}} {{.Hostname}}'`; a
 * template that starts with `table` prints a header and aligned columns
 * (`'table {{.ID}}\t{{.Role}}'`).
 *
 * Templates are a small part of Go's text/template, the part docker users
 * write on the command line: `{{.Field}}`, `{{json .}}`, `{{json .Field}}`
 * and literal text, with `\t` and `\n` written as two characters (docker
 * replaces them the same way). No JavaScript library implements Go's
 * templates in a small, kept-up package, and the whole language (pipelines,
 * range, functions) is more than a list needs; anything else is refused.
 */
import { once } from 'node:events';
import { MusterError } from '../core/errors.js';
import { formatTable, type Output } from './output.js';

/** A field a template may name: the header over its column and its value. */
export interface ListField<T> {
  header: string;
  value: (item: T) => unknown;
}

/** The fields of one list, by template name (`ID`, `Hostname`…). */
export type ListFields<T> = Readonly<Record<string, ListField<T>>>;

/** What --format asked for. */
export type ListFormat<T> =
  | { kind: 'table' }
  | { kind: 'json' }
  /** A template: one line per item, or (table) a header and aligned cells split at tabs. */
  | { kind: 'template'; table: boolean; header: string[]; render: (item: T) => string };

/** How a list prints: the text for each page as it arrives, and the text after the last. */
export interface ListPrinter<T> {
  page(items: readonly T[]): string;
  end(): string;
}

/**
 * A list's fields: its table's columns (`columns`, docker's names for them),
 * then each property of its JSON objects not already named, under docker's
 * Go-style name (upper-case initial: `certNotAfter` is `.CertNotAfter`)
 * headed by its words in upper case (`CERT NOT AFTER`).
 */
export function listFields<T>(columns: Record<string, ListField<T>>, properties: readonly string[]): ListFields<T> {
  const fields: Record<string, ListField<T>> = { ...columns };
  for (const key of properties) {
    const name = `${key[0]!.toUpperCase()}${key.slice(1)}`;
    if (name.toUpperCase() === 'ID' || name in fields) continue;
    fields[name] = { header: key.replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase(), value: (item) => (item as Record<string, unknown>)[key] };
  }
  return fields;
}

/** A value as `{{.Field}}` and the table print it: labels as k=v,k=v, nothing for an absent one. */
export function listText(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return value.map(listText).join(',');
  if (typeof value === 'object')
    return Object.entries(value)
      .map(([k, v]) => `${k}=${listText(v)}`)
      .join(',');
  return String(value);
}

const HINT = "a template takes {{.Field}}, {{json .}}, {{json .Field}} and text, e.g. --format '{{.ID}}\\t{{.Hostname}}'";

/** One piece of a template: literal text, or a field (json: printed as JSON; no field: the whole item). */
type Piece = { text: string } | { field?: string; json: boolean };

function parseAction(action: string, names: readonly string[], whole: string): Piece {
  const match = /^(json\s+)?\.([A-Za-z][A-Za-z0-9]*)?$/.exec(action.trim());
  if (match === null || (match[1] === undefined && match[2] === undefined)) {
    throw new MusterError('USAGE', `--format: {{${action.slice(0, 40)}}} is not a template action muster knows`, { hint: HINT });
  }
  const field = match[2];
  if (field !== undefined && !names.includes(field)) {
    throw new MusterError('USAGE', `--format: unknown field .${field.slice(0, 40)} in '${whole.slice(0, 80)}'`, {
      hint: `fields: ${names.map((n) => `.${n}`).join(' ')}`,
    });
  }
  return field === undefined ? { json: true } : { field, json: match[1] !== undefined };
}

/** Splits a template into pieces, refusing what it cannot print before anything is asked of a manager. */
function parsePieces(template: string, names: readonly string[]): Piece[] {
  const pieces: Piece[] = [];
  let rest = template;
  while (rest !== '') {
    const open = rest.indexOf('{{');
    if (open < 0) {
      pieces.push({ text: rest });
      break;
    }
    if (open > 0) pieces.push({ text: rest.slice(0, open) });
    const close = rest.indexOf('}}', open + 2);
    if (close < 0) throw new MusterError('USAGE', `--format: '{{' without '}}' in '${template.slice(0, 80)}'`, { hint: HINT });
    pieces.push(parseAction(rest.slice(open + 2, close), names, template));
    rest = rest.slice(close + 2);
  }
  return pieces;
}

/** Reads --format: table, json, or a template over `fields`; anything it cannot print is a usage error (exit 2). */
export function parseListFormat<T>(format: string | undefined, fields: ListFields<T>): ListFormat<T> {
  if (format === undefined || format === 'table') return { kind: 'table' };
  if (format === 'json') return { kind: 'json' };
  const table = format.startsWith('table');
  // As docker: the `table` word and the spaces around the template go; \t and \n become tab and newline.
  const template = (table ? format.slice('table'.length) : format).trim().replaceAll('\\t', '\t').replaceAll('\\n', '\n');
  if (!template.includes('{{')) {
    throw new MusterError('USAGE', `unknown --format '${format.slice(0, 40)}'`, { hint: `use table, json, or a template: ${HINT.slice(HINT.indexOf('{{'))}` });
  }
  const pieces = parsePieces(template, Object.keys(fields));
  const render = (piece: Piece, item: T): string => {
    if ('text' in piece) return piece.text;
    const value = piece.field === undefined ? item : fields[piece.field]!.value(item);
    return piece.json ? (JSON.stringify(value) ?? 'null') : listText(value);
  };
  const headerOf = (piece: Piece): string => ('text' in piece ? piece.text : piece.field === undefined ? '' : fields[piece.field]!.header);
  return {
    kind: 'template',
    table,
    header: pieces.map(headerOf).join('').split('\t'),
    render: (item) => pieces.map((piece) => render(piece, item)).join(''),
  };
}

/** One JSON object per line (NDJSON), as docker's --format json: a reader can start on the first line. */
export function jsonLinesPrinter<T>(): ListPrinter<T> {
  return { page: (items) => items.map((item) => `${JSON.stringify(item)}\n`).join(''), end: () => '' };
}

/**
 * A table a page at a time: each column is as wide as its widest cell so
 * far, starting from `widths` (what is known before any row), so pages line
 * up unless a later one brings a wider cell. formatTable sizes columns to
 * their widest cell: a blank first row of the widths so far, whose line is
 * dropped, carries them from page to page.
 */
export function pagedTablePrinter<T>(header: readonly string[], row: (item: T) => string[], widths: number[] = []): ListPrinter<T> {
  let started = false;
  const page = (items: readonly T[]): string => {
    const rows = items.map(row);
    const [head = '', , ...body] = formatTable(header, [widths.map((w) => ' '.repeat(w)), ...rows]).split('\n');
    widths = header.map((_, i) => Math.max(widths[i] ?? 0, ...rows.map((r) => (r[i] ?? '').length)));
    const text = `${started ? '' : `${head}\n`}${body.join('\n')}`;
    started = true;
    return text;
  };
  return { page, end: () => (started ? '' : page([])) };
}

/** The printer for a parsed --format; `table` makes the list's own table. */
export function listPrinter<T>(format: ListFormat<T>, table: () => ListPrinter<T>): ListPrinter<T> {
  switch (format.kind) {
    case 'table':
      return table();
    case 'json':
      return jsonLinesPrinter();
    case 'template': {
      const { render } = format;
      // A table template's cells are its text between tabs, aligned as the list's own table.
      if (format.table) return pagedTablePrinter(format.header, (item) => render(item).split('\t'));
      return { page: (items) => items.map((item) => `${render(item)}\n`).join(''), end: () => '' };
    }
  }
}

/** The --format help of a list command, naming its fields, with examples on its first two. */
export function formatHelp<T>(fields: ListFields<T>): string {
  const names = Object.keys(fields).map((n) => `.${n}`);
  const [first = '.ID', second = first] = names;
  return `table (default), json (one object per line), or a template as docker's: '{{${first}}} {{${second}}}', 'table {{${first}}}\\t{{${second}}}' (with a header), '{{json .}}', '{{json ${first}}}'; fields: ${names.join(' ')}`;
}

/** Writes `text`, waiting while the stream's buffer is full: a long listing is not held in memory. */
export async function emit(out: Output['stdout'], text: string): Promise<void> {
  if (text !== '' && !out.write(text)) await once(out, 'drain');
}
