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
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** Prints an error the way every command does (`error:` and, where there is a fix, `hint:`); returns the exit code. */
export function printError(out: Output, error: unknown, colour: boolean): number {
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
