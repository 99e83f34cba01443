/**
 * The process logger: pino, with secrets redacted by path as a second line of
 * defence (muster never passes tokens or keys to the logger in the first
 * place). JSON lines when not on a TTY; one readable line per event on a TTY.
 */
import { Transform, type Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

/** Field paths whose values are never written. */
export const REDACT_PATHS = [
  'token',
  '*.token',
  'tokens',
  '*.tokens',
  'csr',
  '*.csr',
  'key',
  '*.key',
  'keyPem',
  '*.keyPem',
  'privateKey',
  '*.privateKey',
  'req.headers.authorization',
];

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Turns pino's JSON lines into `time LEVEL message key=value…`. */
function humanLines(out: Writable): Transform {
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        try {
          const { time, level, msg, pid: _pid, hostname: _host, err, ...fields } = JSON.parse(line) as Record<string, unknown>;
          const extra = Object.entries(fields)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          const errText = err !== undefined ? ` ${(err as { message?: string }).message ?? ''}` : '';
          this.push(`${String(time)} ${LEVELS[level as number] ?? level} ${String(msg)}${extra ? `  ${extra}` : ''}${errText}\n`);
        } catch {
          this.push(`${line}\n`);
        }
      }
      done();
    },
  });
  stream.pipe(out);
  return stream;
}

/** Makes the process logger writing to `out`. */
export function createLogger(options: { out: Writable & { isTTY?: boolean }; level?: string; pretty?: boolean }): Logger {
  const pretty = options.pretty ?? options.out.isTTY === true;
  return pino(
    {
      level: options.level ?? 'info',
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    pretty ? humanLines(options.out) : options.out,
  );
}
