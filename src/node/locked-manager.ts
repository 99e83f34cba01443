/**
 * A manager that started locked (autolock on, no unlock key given): it
 * cannot read its own key, so it serves on its listen address with a
 * throwaway self-signed certificate only what needs no key — GET /v1/ca (the
 * root, public; joiners check it against their token) and /healthz (503,
 * status "locked", with the store's health as far as it can see it without
 * its keys) — and answers everything else 503 MANAGER_LOCKED. Nodes
 * that verify managers refuse that certificate and move to another manager.
 *
 * `muster unlock` talks to it over manager/control.sock (0600 in the 0700
 * manager folder), never over the network: the key goes only to the process
 * of the user who owns the data dir. A wrong key is refused and counted;
 * the key must open everything (data key, node key, store client key)
 * before the manager goes on, so there is no partial unlock.
 */
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import Fastify, { LogController } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import { formatHostPort, parseHostPort, type HostPort } from '../core/address.js';
import type { Clock } from '../core/clock.js';
import { MusterError, isMusterError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { createRootCa } from '../pki/ca.js';
import { parseUnlockKey } from '../token/unlock-key.js';
import { API } from '../api/routes.js';
import { UnlockRequest, type Health } from '../api/schemas.js';
import type { StoreSpec } from '../config/manager-files.js';
import type { DataDirLayout } from '../config/paths.js';
import { KEYS } from '../store/cluster-store.js';
import { LevelStore } from '../store/level-store.js';
import { TLS12_CIPHERS, TLS_GROUPS, serveLocalSocket } from '../manager/http/app.js';

/** The health of the cluster store as a locked manager sees it. */
export interface LockedStoreCheck {
  /** True when the store is well, as far as can be told without the manager's keys. */
  check(): Promise<boolean>;
  /** Lets go of the store (before the unlocked manager opens it). */
  close(): Promise<void>;
}

/** Whether any of `endpoints` accepts a TCP connection within `timeoutMs`. */
async function anyAccepts(endpoints: readonly string[], timeoutMs: number): Promise<boolean> {
  const tries = endpoints.map(
    (endpoint) =>
      new Promise<boolean>((resolve) => {
        const { host, port } = parseHostPort(endpoint);
        const socket = connect({ host, port, timeout: timeoutMs });
        const done = (ok: boolean): void => {
          socket.destroy();
          resolve(ok);
        };
        socket.once('connect', () => done(true));
        socket.once('timeout', () => done(false));
        socket.once('error', () => done(false));
      }),
  );
  return (await Promise.all(tries)).some(Boolean);
}

/**
 * What a locked manager can check of its store without its keys: the
 * embedded store opens and holds the cluster (it is held open while locked,
 * as the manager holds it once unlocked); an etcd member accepts connections
 * (the client key that would log in is sealed under the data key).
 */
export function lockedStoreCheck(spec: StoreSpec, layout: DataDirLayout): LockedStoreCheck {
  if (spec.kind === 'etcd') return { check: () => anyAccepts(spec.endpoints, 2_000), close: async () => {} };
  let opening: Promise<LevelStore> | undefined;
  return {
    async check() {
      try {
        opening ??= LevelStore.openDir(layout.dbDir, { create: false });
        return (await (await opening).get(KEYS.cluster)) !== undefined;
      } catch {
        opening = undefined; // tried again at the next check
        return false;
      }
    },
    async close() {
      const store = await opening?.catch(() => undefined);
      opening = undefined;
      await store?.close();
    },
  };
}

/** What a locked manager needs. */
export interface LockedParams {
  layout: DataDirLayout;
  listen: HostPort;
  clock: Clock;
  random: Random;
  logger: PinoLogger;
  /** Tries a key: the data key when it opens everything; throws UNLOCK_KEY_WRONG otherwise. */
  open: (unlockKey: Buffer) => Promise<Buffer>;
  /** What /healthz says of the store. */
  store: LockedStoreCheck;
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
    const mapped = isMusterError(error)
      ? error
      : status < 500
        ? new MusterError('BODY_INVALID', `the request is invalid: ${(error as Error).message}`)
        : new MusterError('INTERNAL', 'internal error', { cause: error });
    return reply.code(mapped.statusCode).type('application/json').send(mapped.toJSON());
  });
  app.setNotFoundHandler((_request, reply) => reply.code(503).type('application/json').send(locked().toJSON()));
  app.get(API.rootCa.path, async (_request, reply) => reply.type('application/x-pem-file').send(rootPem));
  app.get(API.health.path, async (_request, reply) => {
    const health: Health = {
      status: 'locked',
      role: 'manager',
      store: (await params.store.check()) ? 'ok' : 'unavailable',
      locked: true,
      unlockFailures: failures,
    };
    return reply.code(503).send(health);
  });
  app.post(API.unlock.path, { schema: { body: UnlockRequest } }, async (request) => {
    if (!local.has(request.raw.socket))
      throw new MusterError('AUTH_FORBIDDEN', "unlock only on the manager's host, through its local socket ('muster unlock')");
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
    throw new MusterError('ADDRESS_IN_USE', `the address ${formatHostPort(params.listen)} is already in use`);
  }
  const socket = await serveLocalSocket(app, layout.controlSocket, (s) => local.add(s));
  logger.warn({ socket: layout.controlSocket }, "this manager is locked (autolock): run 'muster unlock' on this host to unlock it");
  try {
    return await Promise.race([done, stop.then(() => undefined)]);
  } finally {
    await socket.close();
    await app.close();
    await params.store.close();
  }
}
