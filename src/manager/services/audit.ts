/**
 * The audit trail: one JSON line per admin action and per issuance, apart
 * from the debug log. Each line says who (the caller's CN and OU, or the ID
 * of the join token a node presented), what, on which node or user, the
 * serial issued or revoked, and how it ended. Nothing secret is ever passed
 * in: tokens are named by their ID, keys and CSRs never reach this module.
 *
 * A line is written with one synchronous append before the request answers,
 * so a line is never lost to a crash after the client heard "done" (the
 * kernel has it; the disk gets it with the next writeback).
 */
import { closeSync, fchmodSync, openSync, writeSync } from 'node:fs';
import type { Clock } from '../../core/clock.js';
import { isMusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { ROLE_OU } from '../../core/roles.js';
import type { Caller } from '../state/caller.js';

/** Where audit lines go. */
export interface AuditSink {
  write(line: string): void;
  close(): void;
}

/** Appends to a file opened 0600 (whatever the umask), kept open. */
export function fileAuditSink(path: string): AuditSink {
  const fd = openSync(path, 'a', 0o600);
  fchmodSync(fd, 0o600);
  let open = true;
  return {
    write: (line) => {
      if (open) writeSync(fd, line);
    },
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** Writes to a stream (stdout with `--audit-log -`). */
export function streamAuditSink(stream: NodeJS.WritableStream): AuditSink {
  return { write: (line) => void stream.write(line), close: () => {} };
}

/** Keeps lines in memory (tests). */
export function memoryAuditSink(): AuditSink & { lines: string[] } {
  const lines: string[] = [];
  return { lines, write: (line) => void lines.push(line), close: () => {} };
}

/** One audited event. */
export interface AuditEvent {
  action: string;
  /** The authenticated caller (absent for a join, which is named by its token). */
  caller?: Caller | undefined;
  /** A join: the token's ID (a scoped token's ID, or `worker`/`manager` for the classic ones) and the source address. */
  token?: { id: string; source: string };
  /** What was acted on: node, user, token… */
  target?: Record<string, string | undefined>;
  /** The serial issued or revoked. */
  serial?: string;
  serials?: string[];
  /** 'ok', or the error it ended with (only its code is written). */
  result: 'ok' | unknown;
  details?: Record<string, unknown>;
}

/** Writes audit lines; a failing sink is logged, never fails the request that was audited. */
export class Audit {
  private failed = false;

  constructor(private readonly deps: { sink: AuditSink | undefined; clock: Clock; logger: Logger; managerId: string }) {}

  /** Appends one line for `event`. */
  record(event: AuditEvent): void {
    const { sink, clock, managerId } = this.deps;
    if (sink === undefined) return;
    const actor =
      event.token !== undefined
        ? { token: event.token.id, source: event.token.source }
        : event.caller !== undefined
          ? { cn: event.caller.nodeId, ou: ROLE_OU[event.caller.role] }
          : { cn: managerId, ou: 'self' };
    const line = {
      time: new Date(clock.now()).toISOString(),
      manager: managerId,
      actor,
      action: event.action,
      ...(event.target === undefined ? {} : withoutUndefined(event.target)),
      ...(event.serial === undefined ? {} : { serial: event.serial }),
      ...(event.serials === undefined ? {} : { serials: event.serials }),
      result: event.result === 'ok' ? 'ok' : 'error',
      ...(event.result === 'ok' ? {} : { code: isMusterError(event.result) ? event.result.code : 'INTERNAL' }),
      ...(event.details === undefined ? {} : withoutUndefined(event.details)),
    };
    try {
      sink.write(`${JSON.stringify(line)}\n`);
      this.failed = false;
    } catch (error) {
      if (!this.failed) this.deps.logger.error({ err: (error as Error).message }, 'the audit log cannot be written');
      this.failed = true;
    }
  }

  /** Closes the sink. */
  close(): void {
    this.deps.sink?.close();
  }
}

function withoutUndefined(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined));
}
