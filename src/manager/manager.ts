/**
 * The manager process: the cluster store, the service and the HTTPS API,
 * started together and stopped together. `initManager` founds a cluster in
 * a data dir; `Manager.start` serves one that exists.
 */
import { mkdir, chmod } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Logger as PinoLogger } from 'pino';
import type { Clock } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import type { DataDirLayout } from '../config/paths.js';
import type { IssuedCertificate } from '../pki/issue.js';
import { LevelClusterStore, type ClusterStore } from '../store/cluster-store.js';
import type { ExternalCaRecord } from '../store/records.js';
import { buildApp, updateServerCertificate, type MusterApp, type ServerTimeouts, type ServerTls } from './app.js';
import { ClusterService } from './cluster-service.js';
import type { FailureLimits } from './failure-limiter.js';

/** What a manager runs with. */
export interface ManagerParams {
  layout: DataDirLayout;
  listen: { host: string; port: number };
  /** The host written into the manager certificate's SANs and the join command. */
  advertiseHost: string;
  tls: ServerTls;
  clock: Clock;
  random: Random;
  logger: PinoLogger;
  timeouts?: ServerTimeouts;
  failureLimits?: FailureLimits;
  /** Tests pass a store; by default LevelDB under the data dir. */
  store?: ClusterStore;
}

/** A serving manager. */
export class Manager {
  private stopped = false;

  private constructor(
    readonly service: ClusterService,
    private readonly app: MusterApp,
    private readonly store: ClusterStore,
    /** The bound address (port 0 resolved). */
    readonly address: { host: string; port: number },
  ) {}

  /** Opens the store, loads the cluster and starts listening. */
  static async start(params: ManagerParams): Promise<Manager> {
    const store = params.store ?? new LevelClusterStore(params.layout.dbDir);
    await store.open();
    try {
      const service = await ClusterService.open({
        store,
        clock: params.clock,
        random: params.random,
        logger: params.logger,
        advertiseHost: params.advertiseHost,
        ...(params.failureLimits === undefined ? {} : { failureLimits: params.failureLimits }),
      });
      const app = await buildApp({ service, tls: params.tls, logger: params.logger, ...(params.timeouts === undefined ? {} : { timeouts: params.timeouts }) });
      await app.listen({ host: params.listen.host, port: params.listen.port });
      const bound = app.server.address() as AddressInfo;
      return new Manager(service, app, store, { host: params.listen.host, port: bound.port });
    } catch (error) {
      await store.close();
      if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        throw new MusterError('ADDRESS_INVALID', `the address ${params.listen.host}:${params.listen.port} is already in use`, { hint: 'pick another --listen-addr, or stop the process holding the port' });
      }
      throw error;
    }
  }

  /** Serves a renewed manager certificate on new connections. */
  updateTls(tls: ServerTls): void {
    updateServerCertificate(this.app, tls);
  }

  /** Stops listening (in-flight requests finish) and closes the store. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.app.close();
    await this.store.close();
  }
}

/** What founding a cluster needs. */
export interface InitParams {
  layout: DataDirLayout;
  advertiseAddr: string;
  advertiseHost: string;
  certExpiryMs: number;
  root?: { certPem: string; keyPem?: string };
  /** External CAs holding the root key (cfssl); `root` then has no key. */
  externalCAs?: ExternalCaRecord[];
  hostname: string;
  csrPem: string;
  clock: Clock;
  random: Random;
  logger: PinoLogger;
  /** Writes the node's key pair and node.json before the store commits. */
  writeIdentity: (founded: { clusterId: string; nodeId: string; certificate: IssuedCertificate; rootPem: string }) => Promise<void>;
}

/** Founds a cluster in the data dir's store; the caller then starts a Manager on it. */
export async function initManager(params: InitParams): Promise<{ clusterId: string; nodeId: string; certificate: IssuedCertificate }> {
  await mkdir(params.layout.managerDir, { recursive: true, mode: 0o700 });
  await chmod(params.layout.managerDir, 0o700);
  const store = new LevelClusterStore(params.layout.dbDir);
  await store.open();
  try {
    const founded = await ClusterService.found({
      store,
      clock: params.clock,
      random: params.random,
      logger: params.logger,
      advertiseAddr: params.advertiseAddr,
      advertiseHost: params.advertiseHost,
      certExpiryMs: params.certExpiryMs,
      csrPem: params.csrPem,
      hostname: params.hostname,
      ...(params.root === undefined ? {} : { root: params.root }),
      ...(params.externalCAs === undefined ? {} : { externalCAs: params.externalCAs }),
      beforeCommit: params.writeIdentity,
    });
    return { clusterId: founded.service.clusterId, nodeId: founded.nodeId, certificate: founded.certificate };
  } finally {
    await store.close();
  }
}
