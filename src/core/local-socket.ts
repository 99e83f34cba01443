/** A local HTTP server on a unix socket that only the data dir's owner reaches: the manager's control socket, the node's agent socket. */
import { chmod, lstat, rm } from 'node:fs/promises';
import type { Server } from 'node:http';

/**
 * Serves `server` on the socket at `path`, 0600 (a socket file a crash left
 * behind is replaced; any other file there is an error from listen);
 * close() ends it and the connections it holds.
 */
export async function listenOnSocket(server: Server, path: string): Promise<{ close(): Promise<void> }> {
  const stale = await lstat(path).catch(() => undefined);
  if (stale?.isSocket() === true) await rm(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
