/**
 * A serving manager: the cluster state, the services behind the API, the
 * HTTPS listener and this manager's registration among the serving
 * managers. `start()` brings them up in that order; `stop()` takes them down
 * in reverse, once.
 */
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger as PinoLogger } from 'pino';
import { formatHostPort, isWildcard, type HostPort } from '../core/address.js';
import type { Clock } from '../core/clock.js';
import { MusterError, isMusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import { createCsr } from '../pki/csr.js';
import { generateNodeKey } from '../pki/keys.js';
import { KEYS, transact, type ClusterStore } from '../store/cluster-store.js';
import { API, DEFAULT_RENEW_GRACE_MS } from '../api/routes.js';
import type { ManagerBundle } from '../api/schemas.js';
import type { ManagedMembership } from '../store/managed-etcd.js';
import { buildApp, serveLocalSocket, updateServerCertificate, type ConnectionLimits, type MusterApp, type ServerTimeouts, type ServerTls } from './http/app.js';
import { Audit, type AuditSink } from './services/audit.js';
import { Autolock, type LocalLock } from './services/autolock.js';
import { Backups } from './services/backup.js';
import { Authoriser } from './http/authoriser.js';
import { CaServer } from './services/ca-server.js';
import { ClusterState } from './state/cluster-state.js';
import { FailureLimiter, type FailureLimits } from './services/failure-limiter.js';
import { SanPolicy } from './services/san-policy.js';
import { Inventory, NODE_DOWN_AFTER_MS } from './services/inventory.js';
import { Janitor } from './services/janitor.js';
import { LAST_SEEN_FLUSH_MS, LastSeen } from './services/last-seen.js';
import { Membership } from './state/membership.js';
import { Metrics, serveMetrics, timedStore, type MetricsServer } from './services/metrics.js';
import { Revocations } from './services/revocations.js';
import { RootRotation } from './services/root-rotation.js';
import { AdminCa } from './services/admin-ca.js';
import { ScopedTokens } from './services/scoped-tokens.js';
import { Sessions } from './services/sessions.js';
import type { Services } from './http/routes/register.js';
import { Settings } from './services/settings.js';
import { createSigner } from './state/signer.js';
import { sealClearTokens } from './state/stored-tokens.js';
import { DataKeyRing } from './state/data-key.js';

/** What a manager is started with. */
export interface ManagerParams {
  /** An open store; the manager closes it when it stops. */
  store: ClusterStore;
  /** The cluster data key the CA key is sealed under. */
  dataKey: Buffer;
  /** This manager's node ID. */
  nodeId: string;
  listen: HostPort;
  /** The address nodes reach this manager on; port 0 means "the port the listener got". */
  advertise: HostPort;
  tls: ServerTls;
  clock: Clock;
  random: Random;
  logger: PinoLogger;
  timeouts?: ServerTimeouts;
  connectionLimits?: ConnectionLimits;
  failureLimits?: FailureLimits;
  /** How a new manager reaches the store; undefined on an embedded store (one manager only). */
  managerBundle?: () => ManagerBundle | undefined;
  /** On a managed store: its etcd membership (managers added and removed as members). */
  storeMembership?: () => ManagedMembership | undefined;
  /** Where the audit trail goes; none when absent. */
  audit?: AuditSink;
  /** Also serve GET /metrics in plain HTTP here (meant for a loopback address). */
  metricsAddr?: HostPort;
  /** When a silent node counts as down (default NODE_DOWN_AFTER_MS). */
  nodeDownAfterMs?: number;
  /**
   * Keeps a certificate this manager re-issued for itself at start (its own
   * had expired, or does not name the advertise host); the caller writes the
   * pair where the node's key material lives.
   */
  onOwnCertificate?: (tls: ServerTls) => Promise<void>;
  /** This manager's files under autolock (see autolock.ts). */
  localLock?: LocalLock;
  /** Also serve the API on this Unix socket, as this manager itself (local admin commands; the folder's modes guard it). */
  controlSocket?: string;
}

/** Whether a manager certificate can serve now at `host`: valid, and naming the host. */
function servesAs(certPem: string, host: string, now: number): boolean {
  const cert = new X509Certificate(certPem);
  if (now >= Date.parse(cert.validTo)) return false;
  const names = (cert.subjectAltName ?? '').split(', ');
  return isWildcard(host) || names.includes(`IP Address:${host}`) || names.includes(`DNS:${host}`);
}

/** What the services are built from. */
export interface ServiceParams {
  store: ClusterStore;
  /** The data key this manager holds at start (data.key); the services follow the cluster's re-keys from there. */
  dataKey: Buffer;
  nodeId: string;
  /** The address this manager advertises (port 0 until the listener has one). */
  addr: string;
  clock: Clock;
  random: Random;
  logger: Logger;
  failureLimits?: FailureLimits;
  managerBundle: () => ManagerBundle | undefined;
  /** The manager's own certificate, presented to external CAs. */
  clientTls?: () => ServerTls;
  audit?: AuditSink;
  nodeDownAfterMs?: number;
  localLock?: LocalLock;
  storeMembership?: () => ManagedMembership | undefined;
}

/** Loads the cluster state and builds the services behind the routes (SwarmKit's seams), wired to one store. */
export async function buildServices(params: ServiceParams): Promise<{ services: Services; membership: Membership }> {
  const { clock, random, logger } = params;
  const downAfterMs = params.nodeDownAfterMs ?? NODE_DOWN_AFTER_MS;
  const metrics = new Metrics({ store: () => store, clock, downAfterMs });
  const store = timedStore(params.store, metrics);
  // Marks reach the store well within the down-after window, so every manager's view of `ready` stays right.
  // A node's record is rewritten about once per half the down-after window (60 s by default), not at every heartbeat.
  const lastSeen = new LastSeen({
    store,
    clock,
    logger,
    flushMs: Math.max(250, Math.min(LAST_SEEN_FLUSH_MS, Math.floor(downAfterMs / 3))),
    refreshMs: Math.floor(downAfterMs / 2),
  });
  let autolockNow: Autolock | undefined;
  // Started (watching) before the cluster state: a re-key reaches this ring before the records it re-sealed reach the state.
  const dataKeys = new DataKeyRing(
    {
      store,
      nodeId: params.nodeId,
      clock,
      logger,
      ...(params.clientTls === undefined ? {} : { identity: params.clientTls }),
      onChange: async (key) => autolockNow?.followDataKey(key),
    },
    params.dataKey,
  );
  await dataKeys.start();
  // A new manager is given the key the cluster holds now.
  const managerBundle = (): ManagerBundle | undefined => {
    const bundle = params.managerBundle();
    return bundle === undefined ? undefined : { ...bundle, dataKey: dataKeys.current().toString('base64') };
  };
  // A store written before join tokens were sealed gets them sealed before anything reads them.
  if (await sealClearTokens(store, dataKeys.current())) logger.info({}, 'sealed the join tokens the store held in clear');
  const state = await ClusterState.load({
    store,
    logger,
    createSigner: (ca) =>
      dataKeys.withKey((dataKey) =>
        createSigner(ca, { clock, random, logger, dataKey, ...(params.clientTls === undefined ? {} : { clientTls: params.clientTls }) }),
      ),
  });
  const membership = new Membership({ store, clock, nodeId: params.nodeId, startedAt: clock.now() }, params.addr);
  const limiter = new FailureLimiter(clock, params.failureLimits);
  const audit = new Audit({ sink: params.audit, clock, logger, managerId: params.nodeId });
  const revocations = new Revocations({ store, state, clock, logger });
  const scopedTokens = new ScopedTokens({ state, store, membership, clock, random, logger, audit });
  const autolock = new Autolock({ store, dataKeys, clock, random, logger, audit, ...(params.localLock === undefined ? {} : { local: params.localLock }) });
  autolockNow = autolock;
  const crlUrl = (): string => `https://${membership.address}${API.crl.path}`;
  const storeMembership = params.storeMembership === undefined ? {} : { storeMembership: params.storeMembership };
  const adminCa = new AdminCa({ state, store, dataKeys, clock, random, logger });
  const inventory = new Inventory({
    state,
    store,
    membership,
    clock,
    logger,
    sharedStore: managerBundle() !== undefined,
    ...storeMembership,
    revocations,
    audit,
    downAfterMs,
    lastSeen,
    changed: () => metrics.inventoryChanged(),
    dataKeys,
  });
  const sanPolicy = new SanPolicy({ store, inventory, audit, logger });
  const services: Services = {
    state,
    store,
    authoriser: new Authoriser({ state, store, clock }),
    caServer: new CaServer({
      state,
      store,
      membership,
      limiter,
      clock,
      random,
      logger,
      managerBundle,
      scopedTokens,
      revocations,
      metrics,
      audit,
      crlUrl,
      dataKeys,
      adminCa,
      sanPolicy,
      ...storeMembership,
    }),
    adminCa,
    inventory,
    sanPolicy,
    settings: new Settings({
      state,
      store,
      membership,
      clock,
      random,
      logger,
      dataKeys,
      nodeId: params.nodeId,
      audit,
      autolockEnabled: () => autolock.enabled,
    }),
    autolock,
    sessions: new Sessions({ store, clock, logger, membership }),
    backups: new Backups({ store, dataKeys, nodeId: params.nodeId, clock, random, logger, audit }),
    scopedTokens,
    revocations,
    rotation: new RootRotation({ state, store, membership, revocations, clock, random, logger, audit, dataKeys, downAfterMs }),
    metrics,
    audit,
    lastSeen,
    dataKeys,
  };
  return { services, membership };
}

/** A serving manager. */
export class Manager {
  private stopped = false;

  private constructor(
    readonly services: Services,
    private readonly app: MusterApp,
    private readonly params: ManagerParams,
    private readonly membership: Membership,
    /** The certificate served now (and presented to external CAs). */
    private readonly tls: { current: ServerTls },
    /** The bound address (port 0 resolved). */
    readonly address: HostPort,
    private readonly janitor: Janitor,
    private readonly metricsServer: MetricsServer | undefined,
    private readonly local: { close(): Promise<void> } | undefined,
  ) {}

  /** Where plain-HTTP metrics are served, if they are. */
  get metricsAddress(): HostPort | undefined {
    return this.metricsServer?.address;
  }

  /** The address nodes are told to reach this manager on. */
  get advertiseAddr(): string {
    return this.membership.address;
  }

  /** Where its store lives (no credentials). */
  get storeDescription(): string {
    return this.params.store.description;
  }

  /** Loads the cluster from the store and starts serving. */
  static async start(params: ManagerParams): Promise<Manager> {
    const { store, logger } = params;
    const tls = { current: params.tls };
    const managerBundle = params.managerBundle ?? (() => undefined);
    let state: ClusterState | undefined;
    let app: MusterApp | undefined;
    let metricsServer: MetricsServer | undefined;
    let autolock: Autolock | undefined;
    let dataKeys: DataKeyRing | undefined;
    let local: { close(): Promise<void> } | undefined;
    try {
      const built = await buildServices({ ...params, managerBundle, clientTls: () => tls.current, addr: formatHostPort(params.advertise) });
      state = built.services.state;
      const { services, membership } = built;
      autolock = services.autolock;
      dataKeys = services.dataKeys;
      await autolock.start(); // this manager's files follow the cluster's autolock setting before it serves
      // A cluster founded before the admin CA gets one now (API users are issued under the root until it has).
      await services.adminCa
        .ensure()
        .catch((error: unknown) =>
          logger.warn(
            { code: isMusterError(error) ? error.code : 'INTERNAL' },
            'the admin CA could not be made ready; the next API-user certificate tries again',
          ),
        );
      if (params.onOwnCertificate !== undefined && !servesAs(tls.current.certPem, params.advertise.host, params.clock.now())) {
        const key = await generateNodeKey();
        const reissued = await services.caServer.reissueOwn(params.nodeId, {
          csr: createCsr({ privateKey: key.privateKey }),
          managerAddr: formatHostPort(params.advertise),
        });
        tls.current = { keyPem: key.privateKeyPem, certPem: reissued.certPem };
        await params.onOwnCertificate(tls.current);
      }
      app = await buildApp({
        services,
        tls: tls.current,
        logger,
        own: () => new X509Certificate(tls.current.certPem),
        clock: params.clock,
        ...(params.timeouts === undefined ? {} : { timeouts: params.timeouts }),
        ...(params.connectionLimits === undefined ? {} : { limits: params.connectionLimits }),
      });
      await app.listen({ host: params.listen.host, port: params.listen.port });
      local = params.controlSocket === undefined ? undefined : await serveLocalSocket(app, params.controlSocket);
      const bound: HostPort = { host: params.listen.host, port: (app.server.address() as AddressInfo).port };
      const advertiseAddr = formatHostPort({ host: params.advertise.host, port: params.advertise.port === 0 ? bound.port : params.advertise.port });
      await recordManagerAddr(store, params.nodeId, advertiseAddr);
      await membership.register(advertiseAddr);
      const janitor = new Janitor({
        store,
        membership,
        clock: params.clock,
        logger,
        renewGraceMs: () => services.state.cluster.renewGraceMs ?? DEFAULT_RENEW_GRACE_MS,
        pruneDenylist: () => services.revocations.prune(),
      });
      janitor.start();
      services.rotation.run();
      metricsServer = params.metricsAddr === undefined ? undefined : await serveMetrics(params.metricsAddr, services.metrics);
      services.sessions.start();
      return new Manager(services, app, params, membership, tls, bound, janitor, metricsServer, local);
    } catch (error) {
      await local?.close();
      await app?.close().catch(() => undefined);
      await dataKeys?.stop();
      await autolock?.stop();
      await metricsServer?.close().catch(() => undefined);
      params.audit?.close();
      await state?.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        throw new MusterError('ADDRESS_IN_USE', `the address ${formatHostPort(params.listen)} is already in use`);
      }
      throw error;
    }
  }

  /** Serves a renewed manager certificate on new connections (and presents it to external CAs). */
  updateTls(tls: ServerTls): void {
    this.tls.current = tls;
    this.services.dataKeys.retry(); // a re-key wrapped to this certificate opens now
    updateServerCertificate(this.app, tls, this.services.state.trust, this.params.clock.now());
  }

  /** Stops serving: withdraws the registration, finishes in-flight requests, closes the store. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.janitor.stop();
    await this.services.rotation.stop();
    await this.services.lastSeen.stop();
    await this.membership.unregister().catch(() => undefined);
    await this.services.dataKeys.stop();
    await this.services.autolock.stop();
    this.services.sessions.stop(); // parked long-polls answer now, so closing does not wait for them
    await this.local?.close();
    await this.app.close();
    await this.metricsServer?.close();
    this.services.audit.close();
    await this.services.state.close();
    await this.params.store.close();
  }
}

/** Keeps the node record's manager address in step with where this manager serves. */
async function recordManagerAddr(store: ClusterStore, nodeId: string, managerAddr: string): Promise<void> {
  await transact(store, async (tx) => {
    const node = await tx.get(KEYS.nodes.ref(nodeId));
    if (node === undefined) throw new MusterError('STATE_CORRUPT', `the store has no record of this manager (${nodeId})`);
    if (node.managerAddr !== managerAddr) tx.put(KEYS.nodes.ref(nodeId), { ...node, managerAddr });
  });
}
