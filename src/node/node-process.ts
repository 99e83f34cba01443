/**
 * The daemon of `init`, `join`, `run` and `up`: one node process that holds
 * the node's identity (its agent) and, on a manager, serves the API. It
 * follows role changes as they come with renewals: a node promoted on a
 * shared store starts serving with what the renewal gave it, a demoted one
 * stops. `start()` brings it up, `stop()` takes it down, once.
 */
import { X509Certificate } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { Logger as PinoLogger } from 'pino';
import { formatHostPort, parseHostPort, type HostPort } from '../core/address.js';
import type { BackoffPolicy } from '../core/backoff.js';
import type { Clock } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { readDataKeyFile, readStoreSpec, writeManagerFiles } from '../config/manager-files.js';
import { checkDataDir } from '../config/private-paths.js';
import type { DataDirLayout } from '../config/paths.js';
import { KeyStore, type KeyCipher } from '../agent/key-store.js';
import { NodeAgent, type NodeTls, type Renewed } from '../agent/node-agent.js';
import { serveAgentSocket } from '../agent/agent-socket.js';
import { ServiceCertificates } from '../agent/service-certs.js';
import { readNodeState, writeNodeState, type NodeState } from '../agent/node-state.js';
import type { RenewerOptions } from '../agent/renewer.js';
import type { SessionOptions } from '../agent/session.js';
import type { ConnectionLimits } from '../manager/http/app.js';
import type { AuditSink } from '../manager/services/audit.js';
import { Manager } from '../manager/manager.js';
import { advertiseFor } from './advertise.js';
import { lockDataDir, type DataDirLock } from './data-dir-lock.js';
import { LocalLock, openStoreSpec, openWithUnlockKey } from './local-lock.js';
import { lockedStoreCheck, serveLocked } from './locked-manager.js';
import { bundleFor, openManagedStore, openStore, specFromBundle, type LocalMember, type ManagedStore } from './open-store.js';
import { KEYS, type ClusterStore } from '../store/cluster-store.js';
import { isIssuedBy, readBundle } from '../pki/peer.js';
import { handOverLead, memberAddrs, removeMemberTls, restartInTurn, useClientTls, writeMemberTls } from '../store/managed-etcd.js';

/** How long a demoted manager waits for the store to remove its etcd member before it stops it. */
const MEMBER_REMOVAL_WAIT_MS = 60_000;

/** What a node process is made of. */
export interface NodeProcessParams {
  layout: DataDirLayout;
  clock: Clock;
  random: Random;
  logger: PinoLogger;
  renewer: Partial<RenewerOptions & SessionOptions>;
  /** The default listen address of a manager (flags and node.json win). */
  defaultListenAddr: string;
  /** The user muster runs as: the data dir must be theirs. */
  uid: number;
  connectionLimits?: ConnectionLimits;
  /** `run --listen-addr` / `--advertise-addr`: override node.json. */
  listenAddr?: string;
  advertiseAddr?: string;
  /** Opens where a manager writes its audit trail (each time it starts serving). */
  auditSink?: () => AuditSink;
  /** `--metrics-addr`: plain-HTTP metrics of the manager. */
  metricsAddr?: HostPort;
  /** MUSTER_NODE_DOWN_AFTER: when a silent node counts as down. */
  nodeDownAfterMs?: number;
  /** Autolock: the unlock key given at start (--unlock-key-file, MUSTER_UNLOCK_KEY, a systemd credential); without it a locked manager waits for 'muster unlock'. */
  unlockKey?: Buffer;
  /** Resolves when the process is asked to stop (a locked manager stops waiting then). */
  stopRequested?: Promise<unknown>;
  /** The data dir's lock, when the command that starts this process took it already (join, init); else start takes it. */
  dirLock?: DataDirLock;
  /** `init --force-new-cluster`: this manager's member starts as a one-member store that keeps the data. */
  forceNewCluster?: boolean;
  /** Where this node's etcd member runs should it become a manager of a managed store (join's --etcd-* flags). */
  localMember?: LocalMember;
  /** PATH: where a managed store's etcd is found. */
  searchPath: string;
  /** How failed service certificate hooks and issuances are retried (MUSTER_SERVICE_RETRY_BASE). */
  serviceRetry?: BackoffPolicy;
}

/**
 * Where this manager is reached after a restart: the --advertise-addr given
 * now; else the one it had, whose port follows a moved listener when it had
 * followed the listen port before (a manager moved with `run --listen-addr`
 * is advertised at its new port); else from the listen address.
 */
function advertiseAfterMove(state: NodeState, listen: HostPort, override: string | undefined): HostPort {
  if (override !== undefined || state.advertiseAddr === undefined) return advertiseFor(override, listen);
  const before = parseHostPort(state.listenAddr ?? formatHostPort(listen));
  const stored = parseHostPort(state.advertiseAddr, before.port);
  return stored.port === before.port ? { host: stored.host, port: listen.port } : stored;
}

/** Why a node process stopped by itself. */
export interface FatalStop {
  reason: 'expired' | 'removed';
  message: string;
}

/** A running node: its agent, and its manager when it serves. */
export class NodeProcess {
  private agent: NodeAgent | undefined;
  private manager: Manager | undefined;
  private stopping: Promise<void> | undefined;
  private roleChange: Promise<void> = Promise.resolve();
  private fatalStop: FatalStop | undefined;
  private wakeFatal: () => void = () => {};
  private askStop: () => void = () => {};
  /** Resolves when stop() is called (a role change waiting on the store stops waiting). */
  private readonly stopAsked = new Promise<void>((resolve) => {
    this.askStop = resolve;
  });
  /** This manager's files under autolock; undefined on a node that does not serve. */
  private lock: LocalLock | undefined;
  /** One daemon per data dir, from start to stop (see data-dir-lock.ts). */
  private dirLock: DataDirLock | undefined;
  /** What the agent's key store seals node.key with: whatever the lock says now (a promotion or demotion changes it). */
  private readonly cipher: KeyCipher = {
    dataKey: () => this.lock?.dataKey(),
    previousDataKey: () => this.lock?.previousDataKey(),
    sealing: () => this.lock?.sealing() ?? false,
  };
  /** Resolves when the node stops by itself (expired or removed). */
  readonly fatal: Promise<FatalStop>;
  /** A managed store's member and client, while this node serves one. */
  private managed: ManagedStore | undefined;
  /** The node's key and certificates as the manager serves them now (what its etcd member presents). */
  private tls: NodeTls | undefined;
  /** The roots this manager's etcd member was started to trust (etcd reads them only when it starts). */
  private memberTrustPem = '';
  /** The root that issued the certificate this manager's store client presents, and the roots it trusts. */
  private clientTrust = { issuer: '', roots: '' };
  /** Member restarts onto new trusted roots, one after the other. */
  private memberSync: Promise<void> = Promise.resolve();
  /** The node's service certificates (muster cert …), renewed with its own. */
  private serviceCerts: ServiceCertificates | undefined;
  /** The agent socket `muster cert` talks to. */
  private agentSocket: { close(): Promise<void> } | undefined;

  constructor(private readonly params: NodeProcessParams) {
    this.fatal = new Promise((resolve) => {
      this.wakeFatal = () => {
        if (this.fatalStop !== undefined) resolve(this.fatalStop);
      };
    });
  }

  /** The node's state as node.json holds it now. */
  get state(): NodeState {
    if (this.agent === undefined) throw new MusterError('INTERNAL', 'the node process has not started');
    return this.agent.state;
  }

  /** The serving manager, when this node serves. */
  get serving(): Manager | undefined {
    return this.manager;
  }

  /** The service certificates this node keeps, and their hooks' failures since it started (`muster status`). */
  get services(): { count: number; hookFailures: number } {
    return { count: this.serviceCerts?.size ?? 0, hookFailures: this.serviceCerts?.hookFailures ?? 0 };
  }

  /** When the node certificate expires, and the next renewal. */
  get certificate(): { notAfter: number; nextRenewalAt: number | undefined } {
    return { notAfter: this.agent?.notAfter ?? 0, nextRenewalAt: this.agent?.nextRenewalAt };
  }

  /** Starts serving (a manager) and renewing; false when asked to stop while it was still locked. */
  async start(): Promise<boolean> {
    const { layout, logger } = this.params;
    await checkDataDir(layout, this.params.uid);
    this.dirLock = this.params.dirLock ?? (await lockDataDir(layout));
    const state = await readNodeState(layout.nodeJson);
    if (state === undefined) {
      // Fatal (exit 3): a unit that restarts it would find no node again, every few seconds.
      throw new MusterError('NOT_INITIALISED', `${layout.dataDir} holds no node`, {
        hint: "found a cluster with 'muster init' or join one with 'muster join'",
        fatal: true,
      });
    }
    let current = state;
    const stored = state.role === 'manager' ? await readStoreSpec(layout) : undefined;
    // A member's TLS files that a crash left behind (the node's key in clear among them) go before anything waits for an unlock.
    if (stored?.kind === 'etcd-managed') await removeMemberTls(layout);
    if (stored !== undefined) {
      const dataKey = await this.openDataKey(state);
      if (dataKey === undefined) {
        await this.dirLock.release();
        return false;
      }
      this.lock = new LocalLock({ layout, dataKey, clock: this.params.clock, logger }, await new KeyStore(layout).keySealed());
      const pair = await new KeyStore(layout, { cipher: this.cipher }).load({ recover: true }); // this process owns the data dir
      if (pair === undefined) throw new MusterError('STATE_CORRUPT', `${layout.dataDir} has no manager certificate`);
      current = await this.startManager(state, pair, dataKey);
      await writeNodeState(layout.nodeJson, current); // the agent, loaded next, owns node.json from here on
      this.announce();
    }
    this.agent = await NodeAgent.load({
      layout,
      clock: this.params.clock,
      random: this.params.random,
      logger,
      renewerOptions: this.params.renewer,
      ...(current.servingAddr === undefined ? {} : { preferManager: current.servingAddr }),
      cipher: this.cipher,
      onRenewed: (renewed) => {
        // Each renewal of the node (schedule, renew-now push, root rotation, shorter expiry) renews its services' certificates too.
        this.serviceCerts?.renewAll(renewed.state.role === current.role ? 'node renewal' : 'node role change');
        return this.followRole(renewed);
      },
      onTrustChanged: (tls) => this.followTrust(tls),
      onFatal: (reason, message) => {
        this.fatalStop = { reason, message };
        this.wakeFatal();
      },
    });
    this.agent.start();
    const agent = this.agent;
    this.serviceCerts = await ServiceCertificates.load({
      file: layout.servicesJson,
      clock: this.params.clock,
      random: this.params.random,
      logger,
      issue: (request) => agent.issueServiceCertificate(request),
      ...(this.params.serviceRetry === undefined ? {} : { retry: this.params.serviceRetry }),
    });
    this.serviceCerts.start();
    this.agentSocket = await serveAgentSocket(layout.agentSocket, { services: this.serviceCerts, logger });
    return true;
  }

  /** The data key: in clear, or opened with the unlock key given at start, or after serving locked until 'muster unlock'. */
  private async openDataKey(state: NodeState): Promise<Buffer | undefined> {
    const { layout } = this.params;
    const file = await readDataKeyFile(layout);
    if (!file.locked) return file.key;
    if (this.params.unlockKey !== undefined) return openWithUnlockKey(layout, this.params.unlockKey);
    const listen = parseHostPort(this.params.listenAddr ?? state.listenAddr ?? this.params.defaultListenAddr);
    const spec = await readStoreSpec(layout);
    if (spec === undefined) throw new MusterError('STATE_CORRUPT', `${layout.storeJson} is missing`);
    return serveLocked(
      {
        layout,
        listen,
        clock: this.params.clock,
        random: this.params.random,
        logger: this.params.logger,
        open: (key) => openWithUnlockKey(layout, key),
        store: lockedStoreCheck(spec, layout),
      },
      this.params.stopRequested ?? new Promise(() => {}),
    );
  }

  /** Renews now (SIGHUP). */
  renewNow(reason: string): Promise<void> {
    return this.agent?.renewNow(reason) ?? Promise.resolve();
  }

  /** Stops renewing and serving. Idempotent. */
  stop(): Promise<void> {
    this.askStop();
    this.stopping ??= (async () => {
      await this.agentSocket?.close();
      this.serviceCerts?.stop();
      await this.agent?.stop();
      await this.roleChange.catch(() => undefined);
      await this.stopManager();
      await this.memberSync;
      // A removed manager keeps no copy of the store: its member's data goes with its access.
      if (this.fatalStop?.reason === 'removed') await this.dropManagedStore();
      this.lock?.stop();
      await this.dirLock?.release();
      this.params.logger.flush?.();
    })();
    return this.stopping;
  }

  /** Starts serving; returns the node state that says where. */
  private async startManager(state: NodeState, tls: NodeTls, dataKey: Buffer): Promise<NodeState> {
    const { layout, logger, clock, random } = this.params;
    const stored = await readStoreSpec(layout);
    if (stored === undefined) throw new MusterError('STATE_CORRUPT', `${layout.storeJson} is missing`);
    const spec = openStoreSpec(stored, dataKey);
    const listen = parseHostPort(this.params.listenAddr ?? state.listenAddr ?? this.params.defaultListenAddr);
    const advertise = advertiseAfterMove(state, listen, this.params.advertiseAddr);
    this.tls = tls;
    this.memberTrustPem = tls.rootPem;
    this.clientTrust = clientTrustOf(tls);
    let store: ClusterStore;
    if (spec.kind === 'etcd-managed') {
      this.managed = await openManagedStore(spec, {
        layout,
        nodeId: state.nodeId,
        clusterId: state.clusterId,
        tls: () => this.tls ?? tls,
        logger,
        clock,
        random,
        searchPath: this.params.searchPath,
        ...(this.params.forceNewCluster === true ? { forceNewCluster: true } : {}),
      });
      store = this.managed.store;
    } else store = await openStore(spec, { layout, clusterId: state.clusterId, logger });
    const bundle = bundleFor(spec, dataKey);
    const membership = this.managed?.membership;
    const manager = await Manager.start({
      store,
      dataKey,
      nodeId: state.nodeId,
      listen,
      advertise,
      tls: { keyPem: tls.keyPem, certPem: tls.certPem },
      clock,
      random,
      logger,
      managerBundle: () => bundle,
      ...(membership === undefined ? {} : { storeMembership: () => membership }),
      onOwnCertificate: (own) => new KeyStore(layout, { cipher: this.cipher }).writePair(own),
      ...(this.lock === undefined ? {} : { localLock: this.lock }),
      controlSocket: layout.controlSocket,
      ...(this.params.auditSink === undefined ? {} : { audit: this.params.auditSink() }),
      ...(this.params.metricsAddr === undefined ? {} : { metricsAddr: this.params.metricsAddr }),
      ...(this.params.nodeDownAfterMs === undefined ? {} : { nodeDownAfterMs: this.params.nodeDownAfterMs }),
      ...(this.params.connectionLimits === undefined ? {} : { connectionLimits: this.params.connectionLimits }),
    });
    this.manager = manager;
    if (this.params.forceNewCluster === true) await this.dropLostManagers(manager, state.nodeId);
    const servingAddr = manager.advertiseAddr;
    return {
      ...state,
      listenAddr: formatHostPort(listen),
      advertiseAddr: formatHostPort(advertise),
      servingAddr,
      // Its own address first; a port-0 placeholder or a previous address of its own is dropped.
      managers: [servingAddr, ...state.managers.filter((m) => m !== servingAddr && m !== state.servingAddr && !m.endsWith(':0'))],
    };
  }

  /**
   * After --force-new-cluster: every other manager is gone (its member is no
   * longer in the store, and it is removed like `node rm --force`: its access
   * revoked, its certificates on the CRL). Workers go on as they were.
   */
  private async dropLostManagers(manager: Manager, nodeId: string): Promise<void> {
    const { logger } = this.params;
    const { inventory, store } = manager.services;
    const others = ((await store.get(KEYS.managers))?.value.ids ?? []).filter((id) => id !== nodeId);
    for (const id of others) {
      await inventory.removeNode(id, { force: true });
      logger.warn({ nodeId: id }, 'a manager lost with the quorum was removed; it must join again (muster join --force) to serve');
    }
    logger.info({ removed: others.length }, 'the store goes on with this manager alone; other managers can join again with the manager token');
  }

  /** A promoted node's member as its join placed it (node.json; the managers added it there). */
  private storedMember(state: NodeState): LocalMember | undefined {
    const member = state.storeMember;
    if (member === undefined) return undefined;
    return { ...memberAddrs(parseHostPort(member.clientAddr).host, member), ...(member.binary === undefined ? {} : { binary: member.binary }) };
  }

  /** A promoted node's member, for a node.json without one (joined before it was kept): etcd's ports on the host it advertises. */
  private defaultMember(state: NodeState): LocalMember | undefined {
    const advertise = state.advertiseAddr ?? this.params.advertiseAddr;
    if (advertise === undefined) return undefined;
    return memberAddrs(parseHostPort(advertise).host, {});
  }

  /** The one line that says a manager serves, once node.json says where. */
  private announce(): void {
    const manager = this.manager;
    if (manager === undefined) return;
    this.params.logger.info(
      { listen: formatHostPort(manager.address), advertise: manager.advertiseAddr, store: manager.storeDescription },
      `manager listening on ${formatHostPort(manager.address)}`,
    );
  }

  private async stopManager(): Promise<void> {
    const manager = this.manager;
    this.manager = undefined;
    await manager?.stop();
    const managed = this.managed;
    this.managed = undefined;
    await managed?.stopMember();
  }

  /** Deletes what this node held of a managed store (its member's data, and the files that opened it): it no longer serves one. */
  private async dropManagedStore(): Promise<void> {
    const { layout } = this.params;
    const spec = await readStoreSpec(layout).catch(() => undefined);
    if (spec?.kind !== 'etcd-managed') return;
    await rm(layout.etcdDir, { recursive: true, force: true });
    await rm(layout.etcdTlsDir, { recursive: true, force: true });
    await rm(layout.storeJson, { force: true });
    await rm(layout.dataKey, { force: true });
  }

  /**
   * A renewed manager certificate, or a new trust bundle (a root rotation
   * started or completed): the member presents the certificate from its next
   * handshake on (etcd reads its files at each one), and the store client
   * from now on once it comes from another root or the trusted roots
   * changed: a member that trusts only the new root refuses a certificate
   * from the old one. etcd reads its trusted roots only when it starts, so
   * the member restarts onto new ones, in turn with the other managers'
   * (syncMemberTrust); renewals do not wait for that.
   */
  private async renewMember(tls: NodeTls): Promise<void> {
    this.tls = tls;
    const managed = this.managed;
    if (managed === undefined) return;
    await writeMemberTls(this.params.layout, tls);
    const client = clientTrustOf(tls);
    if (client.issuer !== this.clientTrust.issuer || client.roots !== this.clientTrust.roots) {
      useClientTls(managed.store.etcd, tls);
      this.clientTrust = client;
      this.params.logger.info({}, "this manager's store client presents its certificate from the cluster's current root");
    }
    if (rootSet(tls.rootPem) !== rootSet(this.memberTrustPem)) this.syncMemberTrust(managed);
  }

  /**
   * Restarts this manager's member until it trusts the roots the node holds
   * now: one manager at a time across the cluster (restartInTurn), so a root
   * rotation, which every manager learns of at once, never takes the quorum
   * down. The old root leaves etcd's trust when the rotation completes; by
   * then every manager's certificate, and so its store client, is from the
   * new root.
   */
  private syncMemberTrust(managed: ManagedStore): void {
    const { logger } = this.params;
    this.memberSync = this.memberSync
      .then(async () => {
        const current = (): boolean => this.managed !== managed || this.stopping !== undefined || this.tls === undefined;
        if (current() || rootSet(this.tls!.rootPem) === rootSet(this.memberTrustPem)) return;
        await restartInTurn({
          client: managed.store.etcd,
          clusterId: this.state.clusterId,
          logger,
          cancelled: current,
          restart: async () => {
            const tls = this.tls;
            if (current() || tls === undefined) return;
            logger.info({ roots: readBundle(tls.rootPem).length }, "the cluster's trusted roots changed: restarting this manager's etcd member to trust them");
            await handOverLead({ selfEndpoint: managed.member.clientAddr, tls, logger });
            await writeMemberTls(this.params.layout, tls);
            await managed.member.restartWith({});
            this.memberTrustPem = tls.rootPem;
          },
        });
        // The roots changed again while it waited for its turn (a rotation completed): once more.
        if (!current() && rootSet(this.tls!.rootPem) !== rootSet(this.memberTrustPem)) this.syncMemberTrust(managed);
      })
      .catch((error: unknown) => {
        logger.warn(
          { err: error instanceof Error ? error.message : String(error) },
          "the etcd member could not restart onto the cluster's trusted roots; it tries again at the next renewal",
        );
      });
  }

  /** The node took a new trust bundle between renewals (a rotation started or completed): a serving manager's store follows. */
  private followTrust(tls: NodeTls): void {
    this.roleChange = this.roleChange
      .then(async () => {
        if (this.manager === undefined) return;
        await this.renewMember(tls);
      })
      .catch((error: unknown) => {
        this.params.logger.warn(
          { err: error instanceof Error ? error.message : String(error) },
          "the store could not follow the cluster's new trust bundle; it does at the next renewal",
        );
      });
  }

  /** After a renewal: serve the new certificate, and start or stop serving when the role changed. */
  private followRole(renewed: Renewed): Promise<void> {
    this.roleChange = this.roleChange.then(async () => {
      const { layout, logger } = this.params;
      if (renewed.state.role === 'manager') {
        if (this.manager !== undefined) {
          this.manager.updateTls(renewed.tls);
          await this.renewMember(renewed.tls);
          return;
        }
        if (renewed.bundle !== undefined) {
          const local = this.params.localMember ?? this.storedMember(renewed.state) ?? this.defaultMember(renewed.state);
          await writeManagerFiles(layout, { store: specFromBundle(renewed.bundle, local), dataKey: Buffer.from(renewed.bundle.dataKey, 'base64') });
        }
        if ((await readStoreSpec(layout)) === undefined) {
          logger.warn({}, 'this node is a manager now, but no manager gave it access to the cluster store; it does not serve');
          return;
        }
        const file = await readDataKeyFile(layout);
        if (file.locked) throw new MusterError('STATE_CORRUPT', `${layout.dataKey} is wrapped, but this node was not serving`);
        this.lock = new LocalLock({ layout, dataKey: file.key, clock: this.params.clock, logger }, false);
        const serving = await this.startManager(renewed.state, renewed.tls, file.key);
        await this.agent?.updateState(() => serving);
        this.announce();
        logger.info({ nodeId: renewed.state.nodeId }, 'promoted: this node now serves as a manager');
        return;
      }
      if (this.manager !== undefined || renewed.state.servingAddr !== undefined) {
        // The managers take its member out of the store; stopped before that, it would be a voter missing from the quorum that removes it.
        if (this.managed !== undefined && !(await Promise.race([this.managed.member.whenRemoved(MEMBER_REMOVAL_WAIT_MS), this.stopAsked.then(() => true)]))) {
          logger.warn({}, 'the store did not remove this etcd member in time; stopping it anyway');
        }
        await this.stopManager();
        // A demoted node keeps nothing of the cluster's: the store credentials and the data key go,
        // and its key is opened first (it would be sealed under a data key it no longer has).
        // (The embedded store is never deleted: its only manager cannot be demoted.)
        await this.lock?.release();
        this.lock?.stop();
        this.lock = undefined;
        const spec = await readStoreSpec(layout);
        if (spec?.kind === 'etcd') {
          await rm(layout.storeJson, { force: true });
          await rm(layout.dataKey, { force: true });
        }
        await this.dropManagedStore();
        await this.agent?.updateState(({ servingAddr: _serving, ...rest }) => rest);
        logger.info({ nodeId: renewed.state.nodeId }, 'demoted: this node no longer serves as a manager');
      }
    });
    return this.roleChange;
  }
}

/** A certificate's roots as a comparable set (the fingerprints, sorted). */
function rootSet(bundlePem: string): string {
  return readBundle(bundlePem)
    .map((root) => root.fingerprint256)
    .sort()
    .join(',');
}

/** Which root of its bundle issued a node certificate, and the bundle: what the store client presents and trusts. */
function clientTrustOf(tls: NodeTls): { issuer: string; roots: string } {
  const leaf = new X509Certificate(tls.certPem);
  const issuer = readBundle(tls.rootPem).find((root) => isIssuedBy(leaf, root));
  return { issuer: issuer?.fingerprint256 ?? leaf.issuer, roots: rootSet(tls.rootPem) };
}
