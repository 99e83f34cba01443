/** A daemon a test starts (nginx, dockerd): its output kept, stopped with a signal, and waited for until its port accepts connections. */
import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';

/** Keeps what `child` prints; stop() sends SIGTERM (SIGKILL after `killAfterMs`, if given) and resolves once it exited. */
export function watchDaemon(
  child: ChildProcess & { stdout: NodeJS.ReadableStream; stderr: NodeJS.ReadableStream },
  killAfterMs?: number,
): { log(): string; stop(): Promise<void> } {
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (log += d.toString('utf8')));
  const exit = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return {
    log: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const killer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      await exit;
      clearTimeout(killer);
    },
  };
}

/** Resolves once 127.0.0.1:`port` accepts a connection; fails (after stopping the daemon) when it exits first or `timeoutMs` passes. */
export async function waitListening(
  name: string,
  port: number,
  child: ChildProcess,
  daemon: { log(): string; stop(): Promise<void> },
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited at start:\n${daemon.log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) {
      await daemon.stop();
      throw new Error(`${name} did not listen on ${port}:\n${daemon.log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
