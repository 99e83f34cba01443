/**
 * What every route plugin shares: the services behind the routes, the
 * verified caller, and handle(), which registers the handler of one entry of
 * the API's route table (api/routes.ts) with that entry's method, path,
 * access and schemas, typed from it.
 */
import type { Server } from 'node:https';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import type { TSchema } from 'typebox';
import { API, type BodyOf, type Endpoint, type ParamsOf, type QueryOf, type ResponseOf, type RouteName, type SchemaRef } from '../../../api/routes.js';
import * as Schemas from '../../../api/schemas.js';
import { MusterError } from '../../../core/errors.js';
import type { CertRole } from '../../../core/roles.js';
import type { Authoriser } from '../authoriser.js';
import type { Caller } from '../../state/caller.js';
import type { AdminCa } from '../../services/admin-ca.js';
import type { CaServer } from '../../services/ca-server.js';
import type { ClusterState } from '../../state/cluster-state.js';
import type { Inventory } from '../../services/inventory.js';
import type { SanPolicy } from '../../services/san-policy.js';
import type { Settings } from '../../services/settings.js';
import type { Audit } from '../../services/audit.js';
import type { Autolock } from '../../services/autolock.js';
import type { Backups } from '../../services/backup.js';
import type { LastSeen } from '../../services/last-seen.js';
import type { Metrics } from '../../services/metrics.js';
import type { Revocations } from '../../services/revocations.js';
import type { RootRotation } from '../../services/root-rotation.js';
import type { ScopedTokens } from '../../services/scoped-tokens.js';
import type { Sessions } from '../../services/sessions.js';
import type { DataKeyRing } from '../../state/data-key.js';
import type { ClusterStore } from '../../../store/cluster-store.js';

/** The services the routes call. */
export interface Services {
  state: ClusterState;
  /** The store itself, for the health check. */
  store: ClusterStore;
  authoriser: Authoriser;
  caServer: CaServer;
  /** The CA that issues API users' certificates, and its anchor. */
  adminCa: AdminCa;
  inventory: Inventory;
  sanPolicy: SanPolicy;
  settings: Settings;
  scopedTokens: ScopedTokens;
  revocations: Revocations;
  rotation: RootRotation;
  metrics: Metrics;
  audit: Audit;
  lastSeen: LastSeen;
  autolock: Autolock;
  /** Parked long-polls of node sessions. */
  sessions: Sessions;
  /** The cluster data key this manager holds (it follows re-keys). */
  dataKeys: DataKeyRing;
  backups: Backups;
}

/** A route plugin: registers routes that call the services. */
export type RoutesPlugin = FastifyPluginAsyncTypebox<{ services: Services }, Server>;

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
  interface FastifyContextConfig {
    /** Certificate roles allowed to call the route. A route declares this or `public`, never neither (see {@link declaredAccess}). */
    allow?: readonly CertRole[];
    /** Why the route answers without a certificate. Public is declared, never the default: a route that forgets `allow` must not open up. */
    public?: string;
    /** Also accept a node certificate that expired within the renewal grace (renewal only). */
    expiredWithinGrace?: boolean;
    /** Only on the manager's local socket (what only the manager host's root or owner reaches), never over the network. */
    localOnly?: boolean;
    /** The route table's name for the endpoint (api/routes.ts). */
    endpoint?: string;
  }
}

/** The caller the authorisation hook verified. */
export function callerOf(request: FastifyRequest): Caller {
  if (request.caller === undefined) throw new MusterError('AUTH_REQUIRED');
  return request.caller;
}

/** What a registered route declared about its callers: certificate roles, or why it is public. */
export type RouteAccess = { allow: readonly CertRole[] } | { public: string };

/** A route as registered, with its access declaration. */
export interface RegisteredRoute {
  method: string;
  url: string;
  access: RouteAccess;
  /** Answered only on the manager's local socket (403 over the network, whatever the certificate). */
  localOnly: boolean;
}

/** The access a route declares; throws (the app then fails to build) when it declares neither roles nor a reason to be public, or both. */
export function declaredAccess(route: {
  method: string | string[];
  url: string;
  config?: { allow?: readonly CertRole[]; public?: string; localOnly?: boolean };
}): RegisteredRoute {
  const method = [route.method].flat().join(',');
  const { allow, public: reason, localOnly } = route.config ?? {};
  const where = { method, url: route.url, localOnly: localOnly === true };
  if (allow !== undefined && reason === undefined) return { ...where, access: { allow } };
  if (allow === undefined && reason !== undefined && reason !== '') return { ...where, access: { public: reason } };
  throw new Error(`route ${method} ${route.url} must declare either config.allow (the certificate roles) or config.public (why it needs none), not both`);
}

const SCHEMAS = Schemas as unknown as Record<string, TSchema | undefined>;

/** The TypeBox schema a table entry names. */
function schemaOf(ref: SchemaRef<unknown>): TSchema {
  const found = SCHEMAS[ref.name];
  if (found === undefined) throw new Error(`api/schemas.ts has no schema named ${ref.name}`);
  return found;
}

/** A request to endpoint K, typed from its table entry. */
export type RequestOf<K extends RouteName> = FastifyRequest<{ Params: ParamsOf<K>; Querystring: QueryOf<K>; Body: BodyOf<K> }>;

/** The handler of endpoint K: its JSON answer, or the reply it sent itself (bytes, another status). */
export type HandlerOf<K extends RouteName> = (request: RequestOf<K>, reply: FastifyReply) => Promise<ResponseOf<K> | FastifyReply>;

/** Registers the handler of endpoint `name` with what its table entry says (method, path, access, schemas). */
export function handle<K extends RouteName>(app: FastifyInstance<Server>, name: K, handler: HandlerOf<K>): void {
  const endpoint: Endpoint = API[name];
  const response: Record<number, TSchema> = { ...Schemas.ErrorResponses };
  if (endpoint.response !== undefined) for (const status of [200, ...(endpoint.alsoAnswers ?? [])]) response[status] = schemaOf(endpoint.response);
  app.route({
    method: endpoint.method,
    url: endpoint.path,
    config: {
      endpoint: name,
      ...(endpoint.allow === undefined ? {} : { allow: endpoint.allow }),
      ...(endpoint.public === undefined ? {} : { public: endpoint.public }),
      ...(endpoint.localOnly === true ? { localOnly: true } : {}),
      ...(endpoint.expiredWithinGrace === true ? { expiredWithinGrace: true } : {}),
    },
    schema: {
      ...(endpoint.params === undefined ? {} : { params: schemaOf(endpoint.params) }),
      ...(endpoint.query === undefined ? {} : { querystring: schemaOf(endpoint.query) }),
      ...(endpoint.body === undefined ? {} : { body: schemaOf(endpoint.body) }),
      response,
      ...(endpoint.hidden === true ? { hide: true } : {}),
    },
    handler: handler as unknown as RouteHandlerMethod<Server>,
  });
}

/** The endpoints of the table that `registered` (the names handle() was given) lacks: the app refuses to start while one has no handler. */
export function missingEndpoints(registered: Iterable<string>): RouteName[] {
  const have = new Set(registered);
  return (Object.keys(API) as RouteName[]).filter((name) => !have.has(name));
}
