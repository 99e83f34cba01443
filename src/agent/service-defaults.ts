/** Service certificates' defaults, apart from service-certs.ts so that client commands (settings, cert) read them without loading TypeBox. */
import type { BackoffPolicy } from '../core/backoff.js';

/** How long a hook may run before it is killed (and counted as failed). */
export const DEFAULT_HOOK_TIMEOUT_MS = 30_000;

/** Retries of a failed hook or issuance: from 5 s, doubling, at most 10 min apart. */
export const SERVICE_RETRY: BackoffPolicy = { baseMs: 5_000, capMs: 600_000 };
