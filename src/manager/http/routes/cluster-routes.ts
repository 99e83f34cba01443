/** Routes of the settings: the cluster view and update, join tokens (classic and scoped). */
import type { FastifyReply } from 'fastify';
import { isYes } from '../../../api/schemas.js';
import { MusterError } from '../../../core/errors.js';
import { parseUnlockKey } from '../../../token/unlock-key.js';
import { callerOf, handle, type RoutesPlugin } from './register.js';

/** Runs `fn` once the answer has been handed to the connection (or the connection went). */
function afterAnswer(reply: FastifyReply, fn: () => Promise<void>): void {
  reply.raw.once('close', () => {
    void fn().catch(() => undefined);
  });
}

/** Registers the cluster routes. */
export const clusterRoutes: RoutesPlugin = async (app, { services }) => {
  const { settings, scopedTokens, autolock, backups } = services;

  handle(app, 'cluster', async (request) => settings.clusterView(isYes(request.query.tokens), callerOf(request)));

  handle(app, 'updateCluster', async (request, reply) => {
    const { autolock: wanted, ...rest } = request.body;
    const caller = callerOf(request);
    let unlockKey: string | undefined;
    if (wanted !== undefined) {
      // The key goes out in this answer before this manager wraps its files under it.
      const change = await autolock.setEnabled(wanted, caller);
      afterAnswer(reply, change.applied);
      unlockKey = change.result?.unlockKey;
    }
    const view =
      wanted === undefined || rest.certExpiry !== undefined || rest.externalCAs !== undefined
        ? await settings.updateCluster(rest, caller)
        : await settings.clusterView(false);
    return unlockKey === undefined ? view : { ...view, unlockKey };
  });

  handle(app, 'unlockKey', async (request) => autolock.show(callerOf(request)));

  handle(app, 'rotateUnlockKey', async (request, reply) => {
    const change = await autolock.rotate(callerOf(request));
    afterAnswer(reply, change.applied);
    return change.result;
  });

  // Unlocking is for a locked manager (its local socket); one that serves is not locked. Over the network it is
  // refused as a locked manager refuses it (locked-manager.ts), so a network caller learns nothing either way.
  handle(app, 'unlock', async () => {
    throw new MusterError('NOT_LOCKED', 'this manager is not locked: it serves');
  });

  handle(app, 'backup', async (request) =>
    backups.make(request.body.backupKey === undefined ? undefined : parseUnlockKey(request.body.backupKey), callerOf(request)),
  );

  handle(app, 'joinTokens', async (request) => settings.joinTokens(callerOf(request)));

  handle(app, 'rotateToken', async (request) => settings.rotateToken(request.params.role, callerOf(request)));

  handle(app, 'createScopedToken', async (request) => scopedTokens.create(request.body, callerOf(request)));

  handle(app, 'scopedTokens', async () => scopedTokens.list());

  handle(app, 'scopedToken', async (request) => scopedTokens.get(request.params.id));

  handle(app, 'removeScopedToken', async (request) => scopedTokens.remove(request.params.id, callerOf(request)));
};
