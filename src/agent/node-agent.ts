/**
 * The node agent: holds the node's key and certificate, renews them before
 * they expire (see Renewer), follows role changes, and keeps node.json in
 * step. Managers run one for their own certificate too.
 */
import { X509Certificate } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import { ApiClient } from '../api/client.js';
import type { DataDirLayout } from '../config/paths.js';
import { createCsr } from '../pki/csr.js';
import { generateNodeKey } from '../pki/keys.js';
import { checkIssued } from './join.js';
import { KeyStore } from './key-store.js';
import { readNodeState, writeNodeState, type NodeState } from './node-state.js';
import { Renewer, type RenewerOptions, type Validity } from './renewer.js';

/** The node's key material, as PEM. */
export interface NodeTls {
  keyPem: string;
  certPem: string;
  rootPem: string;
}

/** What an agent is built from. */
export interface AgentParams {
  layout: DataDirLayout;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** Called after each renewal has been written to disk (a manager swaps its server certificate here). */
  onRenewed?: (tls: NodeTls, state: NodeState) => void;
  /** Called when renewing can no longer work (certificate expired, node removed). */
  onFatal?: (reason: 'expired' | 'removed', message: string) => void;
  renewerOptions?: Partial<RenewerOptions>;
  /** Overrides the manager address from node.json (a manager talks to its own listener). */
  managerAddr?: string;
}

function validityOf(certPem: string): Validity {
  const cert = new X509Certificate(certPem);
  return { notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
}

/** A running node identity. */
export class NodeAgent {
  private client: ApiClient;
  private readonly renewer: Renewer;
  private validity: Validity;

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
      check: () => this.client.self(),
      onFatal: (reason, message) => params.onFatal?.(reason, message),
      ...(params.renewerOptions === undefined ? {} : { options: params.renewerOptions }),
    });
  }

  /** Loads the node from its data dir (after finishing any interrupted key write). */
  static async load(params: AgentParams): Promise<NodeAgent> {
    const state = await readNodeState(params.layout.nodeJson);
    if (state === undefined) throw new MusterError('NOT_INITIALISED', `${params.layout.dataDir} holds no node`);
    const keyStore = new KeyStore(params.layout);
    const pair = await keyStore.load();
    if (pair === undefined) throw new MusterError('STATE_CORRUPT', `${params.layout.dataDir} has node.json but no certificate`, { hint: "re-join with 'muster join'" });
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

  /** A client that authenticates as this node. */
  makeClient(): ApiClient {
    return new ApiClient({
      address: this.params.managerAddr ?? this.nodeState.managers[0] ?? '',
      tls: { rootPem: this.material.rootPem, certPem: this.material.certPem, keyPem: this.material.keyPem },
    });
  }

  start(): void {
    if (this.params.clock.now() >= this.validity.notAfter) {
      const message = `the node certificate expired at ${new Date(this.validity.notAfter).toISOString()}; re-join the cluster with 'muster join --token TOKEN ADDR'`;
      this.params.logger.error({ reason: 'expired' }, message);
      this.params.onFatal?.('expired', message);
      return;
    }
    this.renewer.start();
  }

  async stop(): Promise<void> {
    await this.renewer.stop();
    this.client.close();
  }

  /** Renews at once. */
  renewNow(reason: string): Promise<void> {
    return this.renewer.renewNow(reason);
  }

  private async renew(reason: string): Promise<Validity> {
    const key = await generateNodeKey(); // a fresh key every time
    const csr = createCsr({ privateKey: key.privateKey, subject: { commonName: this.nodeState.nodeId } });
    const response = await this.client.renew(csr);
    const validity = checkIssued({ response, rootPem: this.material.rootPem, keyPem: key.privateKeyPem, clock: this.params.clock, expectNodeId: this.nodeState.nodeId });
    const next: NodeTls = { keyPem: key.privateKeyPem, certPem: response.certificate, rootPem: this.material.rootPem };
    await this.keyStore.writePair({ keyPem: next.keyPem, certPem: next.certPem });
    if (response.role !== this.nodeState.role) {
      const previous = this.nodeState.role;
      this.nodeState = { ...this.nodeState, role: response.role };
      await writeNodeState(this.params.layout.nodeJson, this.nodeState);
      this.params.logger.info({ from: previous, to: response.role, reason }, `role changed from ${previous} to ${response.role}`);
    }
    this.material = next;
    this.validity = validity;
    const old = this.client;
    this.client = this.makeClient();
    old.close();
    this.params.onRenewed?.(next, this.nodeState);
    return validity;
  }
}
