/** Real muster processes for one e2e file: started with a shared environment, killed after the file. */
import { afterAll } from 'vitest';
import type { NodeView } from '../../src/api/schemas.js';
import { jsonLines, runMuster, spawnMuster, type ChildRun } from './cli.js';
import { slow } from './slowdown.js';

/** Nodes that poll every second and retry renewals quickly: e2e time, not production time. */
export const FAST_ENV = { MUSTER_POLL_INTERVAL: '1s', MUSTER_RENEW_BACKOFF_BASE: '300ms', MUSTER_LOG_LEVEL: 'info' } as const;

/** Starts processes with `env` (FAST_ENV by default), behind `prefix` when given (as-root.ts's AS_ROOT); all are SIGKILLed after the file. */
export function processScope(env: Record<string, string> = FAST_ENV, options: { prefix?: readonly string[] } = {}) {
  const running: ChildRun[] = [];
  afterAll(async () => {
    await Promise.all(running.map((r) => r.stop('SIGKILL')));
  });
  const start = (argv: string[], extra: Record<string, string> = {}): ChildRun => {
    const run = spawnMuster(argv, { env: { ...env, ...extra }, ...(options.prefix === undefined ? {} : { prefix: [...options.prefix] }) });
    running.push(run);
    return run;
  };
  return {
    running,
    start,
    /** `muster join ADDRESS` with the token in MUSTER_TOKEN (never in the arguments); resolves once it joined. */
    async joinNode(dir: string, token: string, address: string, extra: string[] = []): Promise<ChildRun> {
      const run = start(['join', address, '--data-dir', dir, ...extra], { MUSTER_TOKEN: token });
      await run.waitFor(/This node joined cluster/);
      return run;
    },
  };
}

/** Polls `check` every 200 ms until it holds (what a process writes to its files), or fails after `timeoutMs`. */
export async function waitUntil(what: string, check: () => boolean, timeoutMs = slow(60_000)): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Waits (on real time, bounded) until `check` gives a value; for states that other processes reach. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = slow(60_000)): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
}

/** `muster node ls --format json` on a manager's data dir, one node per line. */
export async function nodesFrom(dir: string): Promise<NodeView[]> {
  const r = await runMuster(['node', 'ls', '--format', 'json', '--data-dir', dir]);
  if (r.code !== 0) throw new Error(r.stderr);
  return jsonLines<NodeView>(r.stdout);
}
