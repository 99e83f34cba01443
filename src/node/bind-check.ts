/** Checks that a listen address can be bound before anything is founded on it (DESIGN §11). */
import { createServer } from 'node:net';
import { formatHostPort, type HostPort } from '../core/address.js';
import { MusterError } from '../core/errors.js';

/** Binds `listen` and lets it go again; ADDRESS_INVALID with a hint when that fails. */
export async function checkBindable(listen: HostPort): Promise<void> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: listen.host, port: listen.port, exclusive: true }, resolve);
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    const address = formatHostPort(listen);
    if (code === 'EADDRINUSE') throw new MusterError('ADDRESS_IN_USE', `the address ${address} is already in use`);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      throw new MusterError('ADDRESS_INVALID', `the listen host ${listen.host} cannot be resolved`, {
        hint: "use an IP address of this machine, or 0.0.0.0 for all interfaces, e.g. '--listen-addr 0.0.0.0:4377'",
      });
    if (code === 'EADDRNOTAVAIL')
      throw new MusterError('ADDRESS_INVALID', `${listen.host} is not an address of this machine`, {
        hint: "use one of this machine's addresses, or 0.0.0.0 for all interfaces",
      });
    if (code === 'EACCES')
      throw new MusterError('ADDRESS_INVALID', `this user may not listen on ${address}`, {
        hint: 'use a port above 1023, or run as a user that may bind low ports',
      });
    throw new MusterError('ADDRESS_INVALID', `cannot listen on ${address}: ${code || (error as Error).message}`);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
