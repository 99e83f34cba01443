/**
 * The logger type every part takes. pino's Logger satisfies it; tests pass
 * a recording logger. Secrets never go into log fields (see the redact list
 * where the pino logger is made).
 */

/** One structured log call: fields first, then the message. */
export type LogFn = (fields: Record<string, unknown>, message: string) => void;

/** The logging surface muster uses. */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

/** A logger that drops everything. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

/** A logged line, as recorded by {@link recordingLogger}. */
export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  message: string;
}

/** A logger that keeps every line in memory, for tests. */
export function recordingLogger(): Logger & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  const at =
    (level: LogRecord['level']): LogFn =>
    (fields, message) => {
      records.push({ level, fields, message });
    };
  return { records, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
