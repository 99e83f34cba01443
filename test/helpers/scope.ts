/** What one e2e file starts (in-process commands, servers) and its scratch folder: all stopped and removed after the file. */
import { mkdirSync } from 'node:fs';
import { afterAll } from 'vitest';
import { runInProcess, type InProcessRun } from './cli.js';
import { scratchDir } from './openssl.js';

export function testScope(prefix: string, defaults: { env?: Record<string, string> } = {}) {
  const scratch = scratchDir(prefix);
  const running: InProcessRun[] = [];
  const servers: { stop(): Promise<unknown> }[] = [];
  afterAll(async () => {
    await Promise.all(running.map((r) => r.stop()));
    await Promise.all(servers.map((s) => s.stop()));
    scratch.cleanup();
  });
  return {
    scratch,
    /** The commands started so far, to find one by its output. */
    running,
    /** A folder in the scratch folder, created. */
    dir(name: string): string {
      const d = scratch.path(name);
      mkdirSync(d, { recursive: true });
      return d;
    },
    /** Runs `muster ARGV` in-process, stopped after the file. */
    start(argv: string[], env: Record<string, string> = {}): InProcessRun {
      const run = runInProcess(argv, { env: { ...defaults.env, ...env } });
      running.push(run);
      return run;
    },
    /** Stops `server` after the file. */
    keep<T extends { stop(): Promise<unknown> }>(server: T): T {
      servers.push(server);
      return server;
    },
  };
}
