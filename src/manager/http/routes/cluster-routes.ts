/** Routes of the settings: the cluster view and update, join tokens (classic and scoped). */
import {
  BackupRequest,
  BackupResponse,
  ClusterPatch,
  ClusterQuery,
  ClusterView,
  ErrorResponses,
  JoinTokens,
  ROUTES,
  RotateParams,
  ScopedTokenCreated,
  ScopedTokenList,
  ScopedTokenParams,
  ScopedTokenRequest,
  ScopedTokenView,
  UnlockKeyView,
  UnlockRequest,
  isYes,
} from '../../../api/schemas.js';
import type { FastifyReply } from 'fastify';
import { MusterError } from '../../../core/errors.js';
import { parseUnlockKey } from '../../../token/unlock-key.js';
import { ADMINS, callerOf, type RoutesPlugin } from './route-kit.js';

/** Runs `fn` once the answer has been handed to the connection (or the connection went). */
function afterAnswer(reply: FastifyReply, fn: () => Promise<void>): void {
  reply.raw.once('close', () => {
    void fn().catch(() => undefined);
  });
}

/** Registers the cluster routes. */
export const clusterRoutes: RoutesPlugin = async (app, { services }) => {
  const { settings, scopedTokens, autolock, backups } = services;

  app.get(
    ROUTES.cluster,
    { config: { allow: ADMINS }, schema: { querystring: ClusterQuery, response: { 200: ClusterView, ...ErrorResponses } } },
    async (request) => settings.clusterView(isYes(request.query.tokens), callerOf(request)),
  );

  app.patch(
    ROUTES.cluster,
    { config: { allow: ADMINS }, schema: { body: ClusterPatch, response: { 200: ClusterView, ...ErrorResponses } } },
    async (request, reply) => {
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
    },
  );

  app.get(ROUTES.unlockKey, { config: { allow: ADMINS }, schema: { response: { 200: UnlockKeyView, ...ErrorResponses } } }, async (request) =>
    autolock.show(callerOf(request)),
  );

  app.post(ROUTES.rotateUnlockKey, { config: { allow: ADMINS }, schema: { response: { 200: UnlockKeyView, ...ErrorResponses } } }, async (request, reply) => {
    const change = await autolock.rotate(callerOf(request));
    afterAnswer(reply, change.applied);
    return change.result;
  });

  // Unlocking is for a locked manager (its local socket); one that serves is not locked. Over the network it is
  // refused as a locked manager refuses it (locked-manager.ts), so a network caller learns nothing either way.
  app.post(
    ROUTES.unlock,
    {
      config: {
        localOnly: true,
        public:
          "on the local socket the caller is the host's root or owner; a locked manager has no CA key to check certificates with, the unlock key is the credential (a serving one answers NOT_LOCKED)",
      },
      schema: { body: UnlockRequest, response: { ...ErrorResponses } },
    },
    async () => {
      throw new MusterError('NOT_LOCKED', 'this manager is not locked: it serves');
    },
  );

  // A backup holds the sealed CA key and, without autolock, goes out with the key that opens it: only to the manager's host.
  app.post(
    ROUTES.backup,
    { config: { allow: ['manager'], localOnly: true }, schema: { body: BackupRequest, response: { 200: BackupResponse, ...ErrorResponses } } },
    async (request) => backups.make(request.body.backupKey === undefined ? undefined : parseUnlockKey(request.body.backupKey), callerOf(request)),
  );

  app.get(ROUTES.joinTokens, { config: { allow: ADMINS }, schema: { response: { 200: JoinTokens, ...ErrorResponses } } }, async (request) =>
    settings.joinTokens(callerOf(request)),
  );

  app.post(ROUTES.rotate, { config: { allow: ADMINS }, schema: { params: RotateParams, response: { 200: JoinTokens, ...ErrorResponses } } }, async (request) =>
    settings.rotateToken(request.params.role, callerOf(request)),
  );

  app.post(
    ROUTES.scopedTokens,
    { config: { allow: ADMINS }, schema: { body: ScopedTokenRequest, response: { 200: ScopedTokenCreated, ...ErrorResponses } } },
    async (request) => scopedTokens.create(request.body, callerOf(request)),
  );

  app.get(ROUTES.scopedTokens, { config: { allow: ADMINS }, schema: { response: { 200: ScopedTokenList, ...ErrorResponses } } }, async () =>
    scopedTokens.list(),
  );

  app.delete(
    ROUTES.scopedToken,
    { config: { allow: ADMINS }, schema: { params: ScopedTokenParams, response: { 200: ScopedTokenView, ...ErrorResponses } } },
    async (request) => scopedTokens.remove(request.params.id, callerOf(request)),
  );
};
