/** Routes of the settings: the cluster view and update, join tokens (classic and scoped). */
import {
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
  isYes,
} from '../../api/schemas.js';
import { ADMINS, callerOf, type RoutesPlugin } from './route-kit.js';

/** Registers the cluster routes. */
export const clusterRoutes: RoutesPlugin = async (app, { services }) => {
  const { settings, scopedTokens } = services;

  app.get(ROUTES.cluster, { config: { allow: ADMINS }, schema: { querystring: ClusterQuery, response: { 200: ClusterView, ...ErrorResponses } } }, async (request) =>
    settings.clusterView(isYes(request.query.tokens), callerOf(request)),
  );

  app.patch(ROUTES.cluster, { config: { allow: ADMINS }, schema: { body: ClusterPatch, response: { 200: ClusterView, ...ErrorResponses } } }, async (request) =>
    settings.updateCluster(request.body, callerOf(request)),
  );

  app.get(ROUTES.joinTokens, { config: { allow: ADMINS }, schema: { response: { 200: JoinTokens, ...ErrorResponses } } }, async (request) => settings.joinTokens(callerOf(request)));

  app.post(ROUTES.rotate, { config: { allow: ADMINS }, schema: { params: RotateParams, response: { 200: JoinTokens, ...ErrorResponses } } }, async (request) =>
    settings.rotateToken(request.params.role, callerOf(request)),
  );

  app.post(ROUTES.scopedTokens, { config: { allow: ADMINS }, schema: { body: ScopedTokenRequest, response: { 200: ScopedTokenCreated, ...ErrorResponses } } }, async (request) =>
    scopedTokens.create(request.body, callerOf(request)),
  );

  app.get(ROUTES.scopedTokens, { config: { allow: ADMINS }, schema: { response: { 200: ScopedTokenList, ...ErrorResponses } } }, async () => scopedTokens.list());

  app.delete(ROUTES.scopedToken, { config: { allow: ADMINS }, schema: { params: ScopedTokenParams, response: { 200: ScopedTokenView, ...ErrorResponses } } }, async (request) =>
    scopedTokens.remove(request.params.id, callerOf(request)),
  );
};
