/**
 * The process logger: pino, with secrets redacted by path as a second line of
 * defence (muster never passes tokens or keys to the logger in the first
 * place). Two formats: `json` (one object per line, levels by name) and
 * `text` (`time LEVEL message key=value…`); by default text on a terminal
 * and under journald, JSON otherwise. Under journald (JOURNAL_STREAM set)
 * each line starts with its syslog priority (`<4>` for a warning), which
 * journald reads as the entry's priority: `journalctl -p warning` finds them.
 */
import { Transform, type Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { LogFormat } from './log-format.js';

/** Field names whose values are never written, at the top level and up to two objects down (pino's paths have no deep wildcard). */
const SECRET_FIELDS = ['token', 'tokens', 'csr', 'key', 'keyPem', 'privateKey', 'unlockKey', 'dataKey'];

/** Field paths whose values are never written. */
export const REDACT_PATHS = [...SECRET_FIELDS.flatMap((name) => [name, `*.${name}`, `*.*.${name}`]), 'req.headers.authorization'];

/** syslog priorities (sd-daemon(3)) of pino's levels. */
const PRIORITY: Record<string, number> = { trace: 7, debug: 7, info: 6, warn: 4, error: 3, fatal: 2 };

/** `time LEVEL message key=value…` of one parsed line. */
function textLine(fields: Record<string, unknown>): string {
  const { time, level, msg, err, ...rest } = fields;
  const extra = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const errText = err !== undefined ? ` ${(err as { message?: string }).message ?? ''}` : '';
  return `${String(time)} ${String(level).toUpperCase()} ${String(msg)}${extra ? `  ${extra}` : ''}${errText}`;
}

/** Writes pino's JSON lines to `out` as text, and with journald's priority prefix when asked. */
function lines(out: Writable, options: { format: LogFormat; journald: boolean }): Transform {
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        let fields: Record<string, unknown> | undefined;
        try {
          fields = JSON.parse(line) as Record<string, unknown>;
        } catch {
          fields = undefined;
        }
        const body = fields === undefined || options.format === 'json' ? line : textLine(fields);
        const prefix = options.journald ? `<${PRIORITY[String(fields?.level)] ?? 6}>` : '';
        this.push(`${prefix}${body}\n`);
      }
      done();
    },
  });
  stream.pipe(out);
  return stream;
}

/** What the process logger writes, and how. */
export interface LoggerOptions {
  out: Writable & { isTTY?: boolean };
  level?: string;
  /** Text or JSON; by default text on a terminal and under journald, JSON otherwise. */
  format?: LogFormat;
  /** Running under journald (JOURNAL_STREAM): every line carries its priority. */
  journald?: boolean;
}

/** Makes the process logger writing to `out`. */
export function createLogger(options: LoggerOptions): Logger {
  const journald = options.journald === true;
  const format = options.format ?? (options.out.isTTY === true || journald ? 'text' : 'json');
  return pino(
    {
      level: options.level ?? 'info',
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      // Level names, not pino's numbers: what an operator and a log shipper read.
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    format === 'json' && !journald ? options.out : lines(options.out, { format, journald }),
  );
}
