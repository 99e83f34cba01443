/**
 * A request's logger that makes its child logger (the parent's, bound to
 * the request ID) only when it writes a line. Fastify makes a child per
 * request; most requests of a manager never log (a node's long poll, a
 * renewal), and a pino child costs its bindings' serialisation and the
 * redaction set-up on every request, and its memory for as long as a long
 * poll stays parked (issue 31: a profile of 1,500 nodes at rest put the
 * children at 7% of the manager's busy time). A level the parent does not
 * write is dropped without making the child.
 */
import type { FastifyBaseLogger } from 'fastify';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type Bindings = Parameters<FastifyBaseLogger['child']>[0];
type ChildOptions = NonNullable<Parameters<FastifyBaseLogger['child']>[1]>;

/** The parent's test of a level, when it has one (pino's isLevelEnabled). */
function enabled(logger: FastifyBaseLogger, level: Level): boolean {
  const test = (logger as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled;
  return typeof test !== 'function' || test.call(logger, level);
}

/** The logger Fastify hands a request (request.log); see the file's comment. */
export class LazyRequestLogger {
  #child: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly options: ChildOptions,
  ) {}

  /** The child, made on first use. */
  private made(): FastifyBaseLogger {
    this.#child ??= this.parent.child(this.bindings, this.options);
    return this.#child;
  }

  get level(): string {
    return this.#child?.level ?? this.parent.level;
  }

  set level(level: string) {
    this.made().level = level;
  }

  private write(level: Level, args: unknown[]): void {
    if (this.#child === undefined && !enabled(this.parent, level)) return;
    (this.made()[level] as (...args: unknown[]) => void)(...args);
  }

  // Methods on the prototype, not a closure per request.
  fatal(...args: unknown[]): void {
    this.write('fatal', args);
  }
  error(...args: unknown[]): void {
    this.write('error', args);
  }
  warn(...args: unknown[]): void {
    this.write('warn', args);
  }
  info(...args: unknown[]): void {
    this.write('info', args);
  }
  debug(...args: unknown[]): void {
    this.write('debug', args);
  }
  trace(...args: unknown[]): void {
    this.write('trace', args);
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildOptions): FastifyBaseLogger {
    return this.made().child(bindings, options);
  }
}

/** Fastify's childLoggerFactory: a lazy child unless the route sets its own level (then the child at once). */
export function lazyChildLogger(logger: FastifyBaseLogger, bindings: Bindings, options: ChildOptions): FastifyBaseLogger {
  if (options.level !== undefined) return logger.child(bindings, options);
  return new LazyRequestLogger(logger, bindings, options) as unknown as FastifyBaseLogger;
}
