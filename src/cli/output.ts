/**
 * Terminal output: aligned tables, `error:`/`hint:` lines, colour only on a
 * TTY (and never with NO_COLOR).
 */
import type { Writable } from 'node:stream';
import { MusterError } from '../core/errors.js';

/** Where a command writes. */
export interface Output {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean };
}

/** Wraps text in an ANSI colour when allowed. */
export function paint(text: string, colour: 'red' | 'yellow' | 'green' | 'bold' | 'dim', enabled: boolean): string {
  if (!enabled) return text;
  const codes = { red: 31, yellow: 33, green: 32, bold: 1, dim: 2 } as const;
  return `\u001b[${codes[colour]}m${text}\u001b[0m`;
}

/** Renders rows as a left-aligned table with a header, columns three spaces apart (like docker). */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

/**
 * What the operating system said, in words a person can act on: a file
 * that cannot be read or written, a full disk, a host name that does not
 * resolve. Undefined for anything else.
 */
export function describeSystemError(error: unknown): MusterError | undefined {
  const { code, path, hostname, syscall } = error as { code?: unknown; path?: unknown; hostname?: unknown; syscall?: unknown };
  const where = typeof path === 'string' ? path : 'a file muster uses';
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return new MusterError('FILE_ACCESS', `permission denied: ${where}`, {
        hint: 'run muster as the user that owns the data dir (root for /var/lib/muster), or choose another --data-dir',
      });
    case 'ENOENT':
      return new MusterError('FILE_ACCESS', `${where} does not exist`, { hint: 'check the path; a data dir is made by init or join' });
    case 'ENOTDIR':
    case 'EISDIR':
      return new MusterError('FILE_ACCESS', `${where} is not what muster expects here (${code === 'ENOTDIR' ? 'a folder' : 'a file'} in the way)`, {
        hint: 'check --data-dir and the files inside it',
      });
    case 'EROFS':
      return new MusterError('FILE_ACCESS', `${where} is on a read-only file system`, { hint: 'choose a --data-dir on a writable disk' });
    case 'ENOSPC':
      return new MusterError('FILE_ACCESS', `no space left on the device of ${where}`, { hint: 'free some space and try again' });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new MusterError(
        'ADDRESS_INVALID',
        `the host name ${typeof hostname === 'string' ? hostname : ''} cannot be resolved${syscall === 'getaddrinfo' ? '' : ` (${String(syscall)})`}`.replace(
          '  ',
          ' ',
        ),
        { hint: 'check the address, or use an IP address' },
      );
    default:
      return undefined;
  }
}

/** Prints an error the way every command does (`error:` and, where there is a fix, `hint:`); returns the exit code. */
export function printError(out: Output, error: unknown, colour: boolean): number {
  // A reader of the output that went away (`muster node ls | head`) is no failure: end quietly, as other CLIs do.
  // (A manager connection that breaks reaches here as MANAGER_UNREACHABLE, never as a raw EPIPE.)
  const { code, syscall } = (error ?? {}) as NodeJS.ErrnoException;
  if (code === 'EPIPE' && syscall === 'write') return 0;
  const described = error instanceof MusterError ? error : describeSystemError(error);
  if (described !== undefined) error = described;
  if (error instanceof MusterError) {
    out.stderr.write(`${paint('error:', 'red', colour)} ${error.message}\n`);
    if (error.hint !== undefined) out.stderr.write(`${paint('hint:', 'yellow', colour)} ${error.hint}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  out.stderr.write(`${paint('error:', 'red', colour)} ${message}\n`);
  return 1;
}

/** A relative time like "in 89 days" or "3 minutes ago". */
export function relativeTime(target: number, now: number): string {
  const diff = target - now;
  const abs = Math.abs(diff);
  const units: [number, string][] = [
    [86_400_000, 'day'],
    [3_600_000, 'hour'],
    [60_000, 'minute'],
    [1_000, 'second'],
  ];
  for (const [size, name] of units) {
    if (abs >= size || size === 1_000) {
      const n = Math.max(0, Math.floor(abs / size));
      const text = `${n} ${name}${n === 1 ? '' : 's'}`;
      return diff >= 0 ? `in ${text}` : `${text} ago`;
    }
  }
  return 'now';
}
