/**
 * A manager that started locked (autolock on, no unlock key given): it
 * cannot read its own key, so it serves on its listen address with a
 * throwaway self-signed certificate only what needs no key — GET /v1/ca (the
 * root, public; joiners check it against their token) and /healthz (503,
 * status "locked") — and answers everything else 503 MANAGER_LOCKED. Nodes
 * that verify managers refuse that certificate and move to another manager.
 *
 * `muster unlock` talks to it over manager/control.sock (0600 in the 0700
 * manager folder), never over the network: the key goes only to the process
 * of the user who owns the data dir. A wrong key is refused and counted;
 * the key must open everything (data key, node key, store client key)
 * before the manager goes on, so there is no partial unlock.
 */
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import Fastify, { LogController } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import { formatHostPort, type HostPort } from '../core/address.js';
import type { Clock } from '../core/clock.js';
import { MusterError, isMusterError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { createRootCa } from '../pki/ca.js';
import { parseUnlockKey } from '../token/unlock-key.js';
import { ROUTES, UnlockRequest, type Health } from '../api/schemas.js';
import type { DataDirLayout } from '../config/paths.js';
import { TLS12_CIPHERS, TLS_GROUPS, serveLocalSocket } from '../manager/app.js';

/** What a locked manager needs. */
export interface LockedParams {
  layout: DataDirLayout;
  listen: HostPort;
  clock: Clock;
  random: Random;
  logger: PinoLogger;
  /** Tries a key: the data key when it opens everything; throws UNLOCK_KEY_WRONG otherwise. */
  open: (unlockKey: Buffer) => Promise<Buffer>;
}

/** Serves locked until a right key arrives on the local socket; resolves with the data key (both listeners closed), or undefined when `stop` fires first. */
export async function serveLocked(params: LockedParams, stop: Promise<unknown>): Promise<Buffer | undefined> {
  const { layout, logger } = params;
  const throwaway = createRootCa({ clusterId: 'locked', clock: params.clock, random: params.random });
  const rootPem = await readFile(layout.rootCa, 'utf8');
  let failures = 0;
  let unlocked: (dataKey: Buffer) => void = () => {};
  const done = new Promise<Buffer>((resolve) => {
    unlocked = resolve;
  });
  const local = new WeakSet<Socket>();
  const app = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 4096,
    // The listener's cipher suites and groups, as when it serves: an unauthenticated client may not pick ffdhe8192 here either.
    https: { key: throwaway.keyPem, cert: throwaway.certPem, minVersion: 'TLSv1.2', ciphers: TLS12_CIPHERS, ecdhCurve: TLS_GROUPS },
  });
  const locked = (): MusterError =>
    new MusterError('MANAGER_LOCKED', 'this manager is locked: its keys are encrypted under the unlock key', {
      hint: "on the manager's host run 'muster unlock' (the key from standard input, --unlock-key-file or MUSTER_UNLOCK_KEY)",
    });
  app.setErrorHandler((error, _request, reply) => {
    // fastify's own refusals (a body that is not the schema's, not JSON, too large) are 4xx; anything else is a bug.
    const status = (error as { statusCode?: number }).statusCode ?? 500;
    const mapped = isMusterError(error) ? error : status < 500 ? new MusterError('BODY_INVALID', `the request is invalid: ${(error as Error).message}`) : new MusterError('INTERNAL', 'internal error', { cause: error });
    return reply.code(mapped.statusCode).type('application/json').send(mapped.toJSON());
  });
  app.setNotFoundHandler((_request, reply) => reply.code(503).type('application/json').send(locked().toJSON()));
  app.get(ROUTES.ca, async (_request, reply) => reply.type('application/x-pem-file').send(rootPem));
  app.get(ROUTES.health, async (_request, reply) => {
    const health: Health = { status: 'locked', role: 'manager', store: 'unavailable', locked: true, unlockFailures: failures };
    return reply.code(503).send(health);
  });
  app.post(ROUTES.unlock, { schema: { body: UnlockRequest } }, async (request) => {
    if (!local.has(request.raw.socket)) throw new MusterError('AUTH_FORBIDDEN', "unlock only on the manager's host, through its local socket ('muster unlock')");
    const key = parseUnlockKey((request.body as UnlockRequest).unlockKey);
    try {
      const dataKey = await params.open(key);
      logger.info({ failures }, 'unlocked');
      setImmediate(() => unlocked(dataKey)); // after the answer is on its way
      return { unlocked: true };
    } catch (error) {
      if (!isMusterError(error, 'UNLOCK_KEY_WRONG')) throw error;
      failures += 1;
      logger.warn({ failures }, `a wrong unlock key was offered (${failures} so far)`);
      throw new MusterError('UNLOCK_KEY_WRONG', undefined, { details: { failures } });
    }
  });
  try {
    await app.listen({ host: params.listen.host, port: params.listen.port });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    throw new MusterError('ADDRESS_INVALID', `the address ${formatHostPort(params.listen)} is already in use`, { hint: 'pick another --listen-addr, or stop the process holding the port' });
  }
  const socket = await serveLocalSocket(app, layout.controlSocket, (s) => local.add(s));
  logger.warn({ socket: layout.controlSocket }, "this manager is locked (autolock): run 'muster unlock' on this host to unlock it");
  try {
    return await Promise.race([done, stop.then(() => undefined)]);
  } finally {
    await socket.close();
    await app.close();
  }
}
