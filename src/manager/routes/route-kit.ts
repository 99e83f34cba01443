/** What every route plugin shares: the services behind the routes, who may call, and the verified caller. */
import type { Server } from 'node:https';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { MusterError } from '../../core/errors.js';
import type { CertRole } from '../../core/roles.js';
import type { Authoriser, Caller } from '../authoriser.js';
import type { CaServer } from '../ca-server.js';
import type { ClusterState } from '../cluster-state.js';
import type { Inventory } from '../inventory.js';
import type { SanPolicy } from '../san-policy.js';
import type { Settings } from '../settings.js';
import type { Audit } from '../audit.js';
import type { Autolock } from '../autolock.js';
import type { Backups } from '../backup.js';
import type { LastSeen } from '../last-seen.js';
import type { Metrics } from '../metrics.js';
import type { Revocations } from '../revocation.js';
import type { RootRotation } from '../rotation.js';
import type { ScopedTokens } from '../scoped-tokens.js';
import type { Sessions } from '../sessions.js';
import type { DataKeyRing } from '../data-key.js';
import type { ClusterStore } from '../../store/cluster-store.js';

/** The services the routes call. */
export interface Services {
  state: ClusterState;
  /** The store itself, for the health check. */
  store: ClusterStore;
  authoriser: Authoriser;
  caServer: CaServer;
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

/** Routes for admins: managers and API users. */
export const ADMINS: readonly CertRole[] = ['manager', 'admin'];
/** Routes for nodes: managers and workers. */
export const NODES: readonly CertRole[] = ['manager', 'worker'];

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
  interface FastifyContextConfig {
    /** Certificate roles allowed to call the route; absent means public. */
    allow?: readonly CertRole[];
    /** Also accept a node certificate that expired within the renewal grace (renewal only). */
    expiredWithinGrace?: boolean;
    /** Only on the manager's local socket (what only the manager host's root or owner reaches), never over the network. */
    localOnly?: boolean;
  }
}

/** The caller the authorisation hook verified. */
export function callerOf(request: FastifyRequest): Caller {
  if (request.caller === undefined) throw new MusterError('AUTH_REQUIRED');
  return request.caller;
}
