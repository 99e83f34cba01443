/**
 * Durations, written Go-style (`90m`, `1h30m`, `2160h`, `1.5h`) or with days
 * (`90d`, `1d12h`), as `--cert-expiry` and the API take them.
 */
import { MusterError } from './errors.js';

const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * The shortest certificate lifetime muster issues (issue 31): 5 minutes. A
 * renewal lands 2.5 to 4 minutes in, leaving a minute for retries; shorter
 * lifetimes leave no room for one failed attempt.
 */
export const MIN_CERT_EXPIRY_MS = 5 * 60_000;
/** The default certificate lifetime: 90 days, like Swarm. */
export const DEFAULT_CERT_EXPIRY_MS = 90 * 86_400_000;
/** Longer than this is a typo, not a policy. */
const MAX_DURATION_MS = 100 * 365 * 86_400_000;

const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/** Parses a duration into milliseconds; DURATION_INVALID on anything else. */
export function parseDuration(text: unknown): number {
  const shown = typeof text === 'string' ? JSON.stringify(text.slice(0, 40)) : typeof text;
  if (typeof text !== 'string' || !WHOLE.test(text)) {
    throw new MusterError('DURATION_INVALID', `invalid duration ${shown}`);
  }
  let total = 0;
  for (const match of text.matchAll(PART)) {
    total += Number(match[1]) * (UNIT_MS[match[2] ?? ''] ?? Number.NaN);
  }
  if (!Number.isFinite(total) || total > MAX_DURATION_MS) throw new MusterError('DURATION_INVALID', `invalid duration ${shown}: too long`);
  return Math.round(total);
}

/** Parses a certificate expiry: a duration of at least 5m, never silently raised. */
export function parseCertExpiry(text: unknown): number {
  const ms = parseDuration(text);
  if (ms < MIN_CERT_EXPIRY_MS) {
    throw new MusterError('CERT_EXPIRY_TOO_SHORT', `certificate expiry ${formatDuration(ms)} is below the minimum of ${formatDuration(MIN_CERT_EXPIRY_MS)}`);
  }
  return ms;
}

/** Writes a duration compactly in hours, minutes and seconds: `2160h`, `1h30m`, `45s`, `0s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return ms <= 0 ? '0s' : `${ms}ms`;
  const totalSeconds = Math.floor(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return `${h > 0 ? `${h}h` : ''}${m > 0 ? `${m}m` : ''}${s > 0 ? `${s}s` : ''}`;
}

/** An instant as ISO 8601 UTC (`2026-11-24T08:00:00.000Z`), as the API and the logs write times. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
