/**
 * The node agent: holds the node's key and certificate, renews them before
 * they expire (see Renewer and Session), follows role changes and the list of serving
 * managers, and keeps node.json in step. Managers run one for their own
 * certificate too. Every call goes to one of the managers the cluster last
 * named, moving to another when one is down.
 */
import { X509Certificate } from 'node:crypto';
import { writeFileAtomic } from '../core/atomic-file.js';
import type { Clock } from '../core/clock.js';
import { MusterError, isMusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import { ApiClient } from '../api/client.js';
import type { ManagerBundle, NodeCertificateResponse, SelfResponse, ServiceCertificateRequest, ServiceCertificateResponse } from '../api/schemas.js';
import type { DataDirLayout } from '../config/paths.js';
import { createCsr } from '../pki/csr.js';
import type { ParsedCrl } from '../pki/crl.js';
import { readBundle } from '../pki/peer.js';
import { generateNodeKey } from '../pki/keys.js';
import { fetchCheckedCrl } from './crl.js';
import { acceptBundle, checkIssued } from './join.js';
import { KeyStore, type KeyCipher } from './key-store.js';
import { readNodeState, writeNodeState, type NodeState } from './node-state.js';
import { Renewer, type RenewerOptions, type Validity } from './renewer.js';
import { Session, type SessionOptions } from './session.js';

/** The node's key material, as PEM. */
export interface NodeTls {
  keyPem: string;
  certPem: string;
  rootPem: string;
}

/** What a renewal brought besides the new certificate. */
export interface Renewed {
  tls: NodeTls;
  state: NodeState;
  /** Set when the node became a manager on a shared store: how to serve. */
  bundle?: ManagerBundle;
}

/** What an agent is built from. */
export interface AgentParams {
  layout: DataDirLayout;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** Called after each renewal has been written to disk (a manager swaps its server certificate here; a promotion starts serving). */
  onRenewed?: (renewed: Renewed) => void | Promise<void>;
  /** Called when the node took a new trust bundle between renewals (a root rotation started or completed): a manager's etcd member trusts it too. */
  onTrustChanged?: (tls: NodeTls) => void;
  /** Called when renewing can no longer work (certificate expired, node removed). */
  onFatal?: (reason: 'expired' | 'removed', message: string) => void;
  /** Tuning of the renewal schedule and of the session. */
  renewerOptions?: Partial<RenewerOptions & SessionOptions>;
  /** Talks to this manager first (a manager talks to its own listener). */
  preferManager?: string;
  /** Autolock: node.key is sealed under the data key this cipher holds. */
  cipher?: KeyCipher;
}

function validityOf(certPem: string): Validity {
  const cert = new X509Certificate(certPem);
  return { notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
}

/** How often a node fetches a fresh CRL even when no newer list was announced. */
const CRL_RECHECK_MS = 30 * 60_000;

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** A running node identity. */
export class NodeAgent {
  private client: ApiClient;
  private readonly renewer: Renewer;
  private readonly session: Session;
  private validity: Validity;
  /** The cluster's CRL as last fetched: managers on it are refused. */
  private crl: ParsedCrl | undefined;
  /** When a fresh CRL was last fetched (0: never). */
  private crlCheckedAt = 0;
  /** stop() was called: requests it cuts short are not failures to report. */
  private stopping = false;

  private constructor(
    private readonly params: AgentParams,
    private readonly keyStore: KeyStore,
    private nodeState: NodeState,
    private material: NodeTls,
  ) {
    this.validity = validityOf(material.certPem);
    this.client = this.makeClient();
    this.renewer = new Renewer({
      clock: params.clock,
      random: params.random,
      logger: params.logger,
      current: () => this.validity,
      renew: (reason) => this.renew(reason),
      onFatal: (reason, message) => {
        this.session.stop(); // renewing is over: so is asking whether to renew
        params.onFatal?.(reason, message);
      },
      ...(params.renewerOptions === undefined ? {} : { options: params.renewerOptions }),
    });
    this.session = new Session({
      clock: params.clock,
      random: params.random,
      logger: params.logger,
      renewer: this.renewer,
      current: () => this.validity,
      check: (waitMs, signal) => this.check(waitMs, signal),
      ...(params.renewerOptions === undefined ? {} : { options: params.renewerOptions }),
    });
  }

  /** Loads the node from its data dir (after finishing any interrupted key write). */
  static async load(params: AgentParams): Promise<NodeAgent> {
    const state = await readNodeState(params.layout.nodeJson);
    if (state === undefined) throw new MusterError('NOT_INITIALISED', `${params.layout.dataDir} holds no node`);
    const keyStore = new KeyStore(params.layout, params.cipher === undefined ? {} : { cipher: params.cipher });
    const pair = await keyStore.load({ recover: true }); // this process owns the data dir
    if (pair === undefined)
      throw new MusterError('STATE_CORRUPT', `${params.layout.dataDir} has node.json but no certificate`, { hint: "re-join with 'muster join'" });
    return new NodeAgent(params, keyStore, state, pair);
  }

  get state(): NodeState {
    return this.nodeState;
  }

  get tls(): NodeTls {
    return this.material;
  }

  /** When the held certificate expires. */
  get notAfter(): number {
    return this.validity.notAfter;
  }

  /** When the next scheduled renewal is due. */
  get nextRenewalAt(): number | undefined {
    return this.renewer.nextRenewalAt;
  }

  /** When the session's long poll under way ends on the clock, if one is under way. */
  get pollEndsAt(): number | undefined {
    return this.session.pollEndsAt;
  }

  /** A client that authenticates as this node, to the managers it knows. */
  private makeClient(): ApiClient {
    const preferred = this.params.preferManager;
    const managers = preferred === undefined ? this.shuffled(this.nodeState.managers) : [preferred, ...this.nodeState.managers.filter((m) => m !== preferred)];
    return new ApiClient({
      managers,
      tls: { rootPem: this.material.rootPem, certPem: this.material.certPem, keyPem: this.material.keyPem },
      revoked: () => this.crl?.serials,
      // Issue 31: every request of the node (polls, CRL fetches, renewals, service certificates) on one kept-alive
      // connection, one after another; a request out of turn cuts a parked long poll short (Session.interrupt).
      connections: 1,
      // A renewal keeps that connection: the manager lets the renewed certificate speak on it (useIdentity).
      renewable: true,
    });
  }

  /** Spreads nodes over the managers: each starts with a random one. */
  private shuffled(list: readonly string[]): string[] {
    const out = [...list];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.params.random.float() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /** Starts renewing; a certificate that has expired renews at once (the managers accept it within their grace). */
  start(): void {
    if (this.params.clock.now() >= this.validity.notAfter) {
      this.params.logger.warn(
        { notAfter: new Date(this.validity.notAfter).toISOString() },
        `the node certificate expired at ${new Date(this.validity.notAfter).toISOString()}; renewing it now`,
      );
    }
    this.renewer.start();
    this.session.start(); // after the renewer: its schedule bounds the long polls
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.session.stop();
    await this.renewer.stop();
    await this.client.destroy(); // a long poll may be waiting on it
  }

  /** Asks a manager, with this node's certificate, to sign a certificate for one of its services. */
  issueServiceCertificate(request: ServiceCertificateRequest): Promise<ServiceCertificateResponse> {
    this.session.interrupt(); // the node's one connection may hold a parked long poll
    return this.client.call('issueServiceCertificate', { body: request });
  }

  /** Renews at once. */
  renewNow(reason: string): Promise<void> {
    return this.renewer.renewNow(reason);
  }

  /** Changes node.json (the agent is its one writer while it runs) and talks to the managers it then names. */
  async updateState(change: (state: NodeState) => NodeState): Promise<void> {
    this.nodeState = change(this.nodeState);
    await writeNodeState(this.params.layout.nodeJson, this.nodeState);
    await this.replaceClient();
  }

  /** Asks the managers whether to renew now, and learns the current manager list and trust bundle. */
  private async check(waitMs?: number, signal?: AbortSignal): Promise<SelfResponse> {
    let advice: SelfResponse;
    try {
      advice = await this.client.self(waitMs, signal);
    } catch (error) {
      // Every manager presents a certificate this node cannot verify: the cluster may have rotated its root while it was down.
      if (!isMusterError(error, 'NOT_A_MANAGER')) throw error;
      this.params.logger.warn(
        { err: error.message },
        'the manager presented a certificate this node cannot verify; checking whether the cluster rotated its root',
      );
      if (!(await this.followRotatedRoot())) throw error;
      advice = await this.client.self();
    }
    await this.learnManagers(advice.managers);
    if (advice.rootCA !== undefined && advice.rootCA !== this.material.rootPem) await this.adoptBundle(advice.rootCA, advice.crossSigned);
    // A newer list, or a while since the last fresh one: a removed manager could keep announcing an old number, but not sign a fresh CRL.
    const due = this.params.clock.now() >= this.crlCheckedAt + CRL_RECHECK_MS;
    if (advice.crlNumber !== undefined && (advice.crlNumber > (this.crl?.number ?? -1) || due)) await this.followCrl();
    return advice;
  }

  /** One poll now, as the session makes every poll interval: the renewal advice, the managers, the CRL. */
  poll(): Promise<SelfResponse> {
    return this.check();
  }

  /**
   * Keeps the trust bundle the managers name now (a root rotation started, or
   * completed) when each of its roots is held already or vouched for by a
   * held root through a cross-signed certificate (see acceptBundle).
   */
  private async adoptBundle(bundle: string, crossSigned: string | undefined): Promise<boolean> {
    if (!acceptBundle(bundle, this.material.rootPem, crossSigned)) {
      this.params.logger.warn({}, 'a manager named a trust bundle with a root that no root this node holds vouches for; keeping the one held');
      return false;
    }
    const held = new Set(readBundle(this.material.rootPem).map((root) => root.fingerprint256));
    if (readBundle(bundle).some((root) => !held.has(root.fingerprint256)))
      this.params.logger.info({}, 'the cluster is rotating its root (or rotated it); the root this node holds vouches for the new one');
    await writeFileAtomic(this.params.layout.rootCa, bundle, 0o644);
    this.material = { ...this.material, rootPem: bundle };
    this.params.logger.info({ roots: readBundle(bundle).length }, "the cluster's trust bundle changed; keeping the new one");
    await this.replaceClient();
    this.params.onTrustChanged?.(this.material);
    return true;
  }

  /**
   * After a root rotation this node missed: the managers' certificates chain
   * to a new root. The root served at /v1/ca is trusted only when a
   * cross-signed copy of it, served at /v1/ca/cross-signed, verifies against
   * a root this node already trusts (the old root vouches for the new, as
   * during the rotation). Returns whether the bundle changed.
   */
  private async followRotatedRoot(): Promise<boolean> {
    for (const address of this.nodeState.managers) {
      const bootstrap = new ApiClient({ managers: [address], tls: {}, timeoutMs: 10_000 });
      try {
        const root = (await bootstrap.fetchRootCaUnverified()).toString('utf8');
        // A root already trusted explains nothing: the refusal has another cause.
        if (acceptBundle(root, this.material.rootPem)) continue;
        const crossSigned = (await bootstrap.fetchCrossSignedUnverified()).toString('utf8');
        if (!acceptBundle(root, this.material.rootPem, crossSigned)) continue;
        return await this.adoptBundle(`${this.material.rootPem}${root}`, crossSigned);
      } catch {
        // try the next manager
      } finally {
        await bootstrap.close();
      }
    }
    return false;
  }

  /** The CRL number of the list this node holds (undefined before the first). */
  get crlNumber(): number | undefined {
    return this.crl?.number;
  }

  /**
   * Fetches the newer CRL the managers announced; when the manager this node
   * talks to is on it, moves to another. A CRL that cannot be had is retried
   * at the next poll: the node keeps working with the list it holds.
   */
  private async followCrl(): Promise<void> {
    try {
      const { crl, managerRevoked } = await fetchCheckedCrl(this.client, this.material.rootPem, this.params.clock);
      this.crlCheckedAt = this.params.clock.now();
      if (crl === undefined || crl.number <= (this.crl?.number ?? -1)) return;
      this.crl = crl;
      this.params.logger.info({ crlNumber: crl.number, revoked: crl.serials.size }, 'fetched the cluster CRL');
      if (managerRevoked) {
        this.params.logger.warn({ manager: this.client.address }, 'the manager this node talked to is on the CRL; moving to another');
        await this.replaceClient();
      }
    } catch (error) {
      if (isMusterError(error, 'CRL_INVALID')) {
        // A manager that cannot show a fresh CRL signed by the root is not one to stay with.
        this.params.logger.warn({ manager: this.client.address, err: error.message }, 'the manager this node talked to served no valid CRL; moving to another');
        await this.replaceClient();
        return;
      }
      if (this.stopping) return; // the stop cut the fetch
      this.params.logger.warn({ code: isMusterError(error) ? error.code : 'INTERNAL' }, 'the CRL could not be fetched; trying again at the next poll');
    }
  }

  /** Keeps node.json's manager list as the managers last said it. */
  private async learnManagers(managers: readonly string[]): Promise<void> {
    if (managers.length === 0 || sameList([...managers].sort(), [...this.nodeState.managers].sort())) return;
    await this.updateState((state) => ({ ...state, managers: [...managers] }));
    this.params.logger.info({ managers }, `managers are now ${managers.join(', ')}`);
  }

  private async replaceClient(): Promise<void> {
    const old = this.client;
    this.client = this.makeClient();
    // A long poll may be waiting on the old connections: it answers there (at most one wait), the next poll uses the new client.
    void old.close().catch(() => undefined);
  }

  private async renew(reason: string): Promise<Validity> {
    // A renewal out of schedule (renew now, a retry) must not wait behind a parked long poll on the node's one connection.
    this.session.interrupt();
    const key = await generateNodeKey(); // a fresh key every time
    const csr = createCsr({ privateKey: key.privateKey, subject: { commonName: this.nodeState.nodeId } });
    const { advertiseAddr: advertise, storeMember: member } = this.nodeState;
    const response: NodeCertificateResponse = await this.client.call('renew', {
      body: {
        csr,
        ...(advertise === undefined ? {} : { managerAddr: advertise }),
        ...(member === undefined ? {} : { storeMember: { clientAddr: member.clientAddr, peerAddr: member.peerAddr } }),
      },
    });
    const validity = checkIssued({
      response,
      rootPem: this.material.rootPem,
      keyPem: key.privateKeyPem,
      clock: this.params.clock,
      expectNodeId: this.nodeState.nodeId,
    });
    // The trust bundle comes with the certificate (checkIssued accepted it): two roots while a root rotation runs.
    const next: NodeTls = { keyPem: key.privateKeyPem, certPem: response.certificate, rootPem: response.rootCA };
    await this.keyStore.writePair({ keyPem: next.keyPem, certPem: next.certPem, ...(next.rootPem === this.material.rootPem ? {} : { rootPem: next.rootPem }) });
    if (response.role !== this.nodeState.role) {
      const previous = this.nodeState.role;
      this.nodeState = { ...this.nodeState, role: response.role };
      await writeNodeState(this.params.layout.nodeJson, this.nodeState);
      this.params.logger.info({ from: previous, to: response.role, reason }, `role changed from ${previous} to ${response.role}`);
    }
    const sameTrust = next.rootPem === this.material.rootPem;
    this.material = next;
    this.validity = validity;
    const managersChanged = response.managers.length > 0 && !sameList(response.managers, this.nodeState.managers);
    if (managersChanged) {
      this.nodeState = { ...this.nodeState, managers: response.managers };
      await writeNodeState(this.params.layout.nodeJson, this.nodeState);
    }
    // The session's connection carries on with the renewed certificate (the manager that issued it lets it speak
    // there, and says so): no new handshake per renewal. New roots or managers, or a manager that does not say
    // so (an older one): a new client, whose connections present the new certificate.
    if (response.sameConnection === true && sameTrust && !managersChanged) this.client.useIdentity(next.certPem, next.keyPem);
    else await this.replaceClient();
    await this.params.onRenewed?.({ tls: next, state: this.nodeState, ...(response.manager === undefined ? {} : { bundle: response.manager }) });
    return validity;
  }
}
