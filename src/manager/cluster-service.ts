/**
 * The cluster service: everything the manager does, behind the routes.
 * Joins, renewals, authorisation of client certificates, tokens, settings,
 * the node inventory and API users. Routes validate, call one method here,
 * and return; this class is tested without HTTP.
 */
import { X509Certificate } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import { ID_PATTERN, newId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import { isNodeRole, type CertRole, type NodeRole } from '../core/roles.js';
import { formatDuration, parseCertExpiry } from '../config/duration.js';
import { createRootCa, loadSigningCa, rootDigest } from '../pki/ca.js';
import { parseCsr } from '../pki/csr.js';
import type { IssuedCertificate } from '../pki/issue.js';
import { readPeerCertificate, type PeerIdentity } from '../pki/peer.js';
import { generateJoinToken, matchJoinToken, parseJoinToken } from '../token/join-token.js';
import type { ClusterStore } from '../store/cluster-store.js';
import { SCHEMA_VERSION, type CaRecord, type CertificateRecord, type ClusterRecord, type ExternalCaRecord, type IssueKind, type NodeRecord, type TokensRecord } from '../store/records.js';
import type { ClusterView, JoinRequest, JoinTokens, NodeCertificateResponse, NodeView, RenewReason, SelfResponse, UserResponse, UserRevoked } from '../api/schemas.js';
import { FailureLimiter, type FailureLimits } from './failure-limiter.js';
import { KeyedLock } from './keyed-lock.js';
import { CfsslIssuer } from './cfssl-issuer.js';
import { LocalIssuer, type CertificateIssuer } from './issuer.js';

/** A node that has not been heard from for this long is shown as down. */
export const NODE_DOWN_AFTER_MS = 2 * 60_000;
/** lastSeenAt is written at most this often per node. */
const LAST_SEEN_WRITE_MS = 15_000;

/** What the service is built from. */
export interface ServiceDeps {
  store: ClusterStore;
  clock: Clock;
  random: Random;
  logger: Logger;
  failureLimits?: FailureLimits;
}

/** A verified caller: the identity its certificate carries, and its node record if it is a node. */
export interface Caller extends PeerIdentity {
  role: CertRole;
  node: NodeRecord | undefined;
}

/** What `muster init` needs to found a cluster. */
export interface FoundParams extends ServiceDeps {
  advertiseAddr: string;
  /** The host part of the advertise address, written into the manager's SANs. */
  advertiseHost: string;
  certExpiryMs: number;
  /** An existing root; a P-256 root is founded when absent. Without a key, `externalCAs` sign. */
  root?: { certPem: string; keyPem?: string };
  /** External CAs (cfssl) holding the root key, tried in order. */
  externalCAs?: ExternalCaRecord[];
  /** The first manager's CSR (its key stays in its data dir). */
  csrPem: string;
  hostname: string;
  /**
   * Runs after the first certificate is issued and before the store commits
   * (the caller writes the key pair and node.json here). A crash before the
   * commit leaves a store without a cluster, which init may then redo.
   */
  beforeCommit?: (founded: { clusterId: string; nodeId: string; certificate: IssuedCertificate; rootPem: string }) => Promise<void>;
}

/** The result of founding a cluster. */
export interface Founded {
  service: ClusterService;
  nodeId: string;
  certificate: IssuedCertificate;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The manager's logic. */
export class ClusterService {
  private readonly limiter: FailureLimiter;
  private readonly nodeLock = new KeyedLock();
  private readonly digestHex: string;
  private readonly root: X509Certificate;

  private constructor(
    private readonly deps: ServiceDeps,
    private cluster: ClusterRecord,
    private caRecord: CaRecord,
    private readonly issuer: CertificateIssuer,
    private tokens: TokensRecord,
    private readonly advertiseHost: string,
  ) {
    this.limiter = new FailureLimiter(deps.clock, deps.failureLimits);
    this.digestHex = rootDigest(caRecord.rootPem).toString('hex');
    this.root = new X509Certificate(caRecord.rootPem);
  }

  /** The signer for a stored CA: the local key, or the external CAs. */
  private static issuerFor(caRecord: CaRecord, deps: ServiceDeps): CertificateIssuer {
    if (caRecord.keyPem !== undefined) return new LocalIssuer(loadSigningCa({ certPem: caRecord.rootPem, keyPem: caRecord.keyPem }), deps.clock, deps.random);
    return new CfsslIssuer(caRecord.external ?? [], new X509Certificate(caRecord.rootPem), deps.logger);
  }

  /** Founds a cluster: root, tokens, the first manager's record and certificate, in one batch. */
  static async found(params: FoundParams): Promise<Founded> {
    const { store, clock, random } = params;
    if ((await store.getCluster()) !== undefined) throw new MusterError('CLUSTER_EXISTS');
    const clusterId = newId(random);
    const root: { certPem: string; keyPem?: string } = params.root ?? createRootCa({ clusterId, clock, random });
    const caRecord: CaRecord = { schema: SCHEMA_VERSION, rootPem: root.certPem };
    if (root.keyPem !== undefined) caRecord.keyPem = root.keyPem;
    else caRecord.external = params.externalCAs ?? [];
    const issuer = ClusterService.issuerFor(caRecord, params);
    const digest = rootDigest(root.certPem);
    const now = clock.now();
    const cluster: ClusterRecord = { schema: SCHEMA_VERSION, clusterId, certExpiryMs: params.certExpiryMs, createdAt: now, advertiseAddr: params.advertiseAddr };
    const tokens: TokensRecord = {
      schema: SCHEMA_VERSION,
      worker: generateJoinToken(digest, random),
      manager: generateJoinToken(digest, random),
      rotatedAt: { worker: now, manager: now },
    };
    const nodeId = newId(random);
    const certificate = await issuer.issue({
      csrPem: params.csrPem,
      csr: parseCsr(params.csrPem),
      role: 'manager',
      commonName: nodeId,
      clusterId,
      hosts: [params.advertiseHost],
      validityMs: params.certExpiryMs,
    });
    const node = newNodeRecord({ id: nodeId, role: 'manager', hostname: params.hostname, labels: {}, now, certificate });
    await params.beforeCommit?.({ clusterId, nodeId, certificate, rootPem: root.certPem });
    await store.initialise({ cluster, ca: caRecord, tokens, node, certificate: certificateRecord(nodeId, 'manager', 'init', now, certificate) });
    const service = new ClusterService(params, cluster, caRecord, issuer, tokens, params.advertiseHost);
    return { service, nodeId, certificate };
  }

  /** Loads a founded cluster from its store. */
  static async open(deps: ServiceDeps & { advertiseHost: string }): Promise<ClusterService> {
    const [cluster, caRecord, tokens] = await Promise.all([deps.store.getCluster(), deps.store.getCa(), deps.store.getTokens()]);
    if (cluster === undefined || caRecord === undefined || tokens === undefined) {
      throw new MusterError('STATE_CORRUPT', 'the cluster store holds no cluster', { hint: "found one with 'muster init'" });
    }
    return new ClusterService(deps, cluster, caRecord, ClusterService.issuerFor(caRecord, deps), tokens, deps.advertiseHost);
  }

  /** The root bundle, exact bytes. */
  get rootPem(): string {
    return this.caRecord.rootPem;
  }

  /** The root certificate, for TLS and chain checks. */
  get rootCert(): X509Certificate {
    return this.root;
  }

  get clusterId(): string {
    return this.cluster.clusterId;
  }

  /**
   * Decides who a client certificate belongs to and whether it may call a
   * route open to `allowed`. 401 when there is no certificate or it is not
   * one of ours (wrong root, expired, another cluster); 403 when it is ours
   * but its role is not allowed, or its node has been removed or demoted.
   */
  async authorize(cert: X509Certificate | undefined, allowed: readonly CertRole[]): Promise<Caller> {
    if (cert === undefined) throw new MusterError('AUTH_REQUIRED');
    const identity = readPeerCertificate({ cert, roots: [this.root], now: this.deps.clock.now() });
    if (identity.clusterId !== this.cluster.clusterId || identity.role === undefined) {
      throw new MusterError('CERT_UNTRUSTED', 'the certificate does not belong to this cluster');
    }
    const role = identity.role;
    let node: NodeRecord | undefined;
    if (isNodeRole(role)) {
      node = await this.deps.store.getNode(identity.nodeId);
      if (node === undefined) throw new MusterError('AUTH_FORBIDDEN', 'this certificate names no node of this cluster');
      if (node.removed) throw new MusterError('NODE_REMOVED');
    }
    if (!allowed.includes(role)) throw new MusterError('AUTH_FORBIDDEN', `a ${role} certificate may not call this route`);
    // An API user is only as good as the record of its certificate: one muster
    // did not issue, or an admin revoked, is refused.
    if (role === 'admin') {
      const record = await this.deps.store.getCertificate(identity.serial);
      if (record === undefined || record.role !== 'admin' || record.subject !== identity.nodeId) throw new MusterError('AUTH_FORBIDDEN', 'this API-user certificate is not one this cluster issued');
      if (record.revokedAt !== undefined) throw new MusterError('CERT_REVOKED');
    }
    // A demoted manager keeps its OU until it renews; the store has the last word.
    if (role === 'manager' && node?.role !== 'manager' && !allowed.includes('worker')) {
      throw new MusterError('AUTH_FORBIDDEN', 'this node is no longer a manager');
    }
    return { ...identity, role, node };
  }

  /** Admits a node that presents a join token: the token picks the role, the manager picks the ID. */
  async join(request: JoinRequest, sourceAddr: string): Promise<NodeCertificateResponse> {
    const retryMs = this.limiter.retryAfterMs(sourceAddr);
    if (retryMs > 0) {
      throw new MusterError('RATE_LIMITED', undefined, { details: { retryAfterSeconds: Math.ceil(retryMs / 1000) } });
    }
    let role: NodeRole | undefined;
    try {
      parseJoinToken(request.token);
      role = matchJoinToken(request.token.trim(), this.tokens);
    } catch (error) {
      this.limiter.recordFailure(sourceAddr);
      throw error;
    }
    if (role === undefined) {
      this.limiter.recordFailure(sourceAddr);
      this.deps.logger.warn({ source: sourceAddr }, 'join refused: token not accepted');
      throw new MusterError('TOKEN_REJECTED');
    }
    const csr = parseCsr(request.csr);
    const now = this.deps.clock.now();
    const nodeId = newId(this.deps.random);
    const certificate = await this.issue({ csrPem: request.csr, csr, role, subject: nodeId });
    const node = newNodeRecord({ id: nodeId, role, hostname: request.hostname ?? nodeId, labels: request.labels ?? {}, now, certificate });
    // The record is committed before the certificate leaves: a node that holds a certificate is always in the store.
    await this.deps.store.putNodeWithCertificate(node, certificateRecord(nodeId, role, 'join', now, certificate));
    this.deps.logger.info({ nodeId, role, hostname: node.hostname, serial: certificate.serial, notAfter: iso(certificate.notAfter) }, 'node joined');
    return this.nodeCertificateResponse(node, certificate);
  }

  /** Re-issues a node's certificate for a fresh key; the role comes from the store, so promotions and demotions apply. */
  async renew(caller: Caller, csrPem: string): Promise<NodeCertificateResponse> {
    const csr = parseCsr(csrPem);
    return this.nodeLock.run(caller.nodeId, async () => {
      const current = await this.requireNode(caller.nodeId);
      const now = this.deps.clock.now();
      const certificate = await this.issue({ csrPem, csr, role: current.role, subject: current.id });
      const node: NodeRecord = { ...current, certSerial: certificate.serial, certNotAfter: certificate.notAfter, certRole: current.role, lastSeenAt: now };
      await this.deps.store.putNodeWithCertificate(node, certificateRecord(node.id, node.role, 'renew', now, certificate));
      this.deps.logger.info({ nodeId: node.id, role: node.role, serial: certificate.serial, notAfter: iso(certificate.notAfter) }, 'node renewed');
      return this.nodeCertificateResponse(node, certificate);
    });
  }

  /** The caller's record and whether it should renew now. */
  async self(caller: Caller): Promise<SelfResponse> {
    const node = await this.touch(caller.nodeId);
    const reason = this.renewReason(caller, node);
    const view: SelfResponse = { node: this.view(node), renewNow: reason !== undefined, certExpiry: formatDuration(this.cluster.certExpiryMs) };
    if (reason !== undefined) view.reason = reason;
    return view;
  }

  private renewReason(caller: Caller, node: NodeRecord): RenewReason | undefined {
    if (caller.role !== node.role) return 'role-change';
    // A shortened expiry applies at once to certificates that would outlive it.
    if (caller.notAfter - this.deps.clock.now() > this.cluster.certExpiryMs + 60_000) return 'cert-expiry';
    return undefined;
  }

  /** Cluster settings and CA facts; tokens only when asked. */
  clusterView(includeTokens: boolean): ClusterView {
    const token = (role: NodeRole): { rotatedAt: string; token?: string } =>
      includeTokens ? { rotatedAt: iso(this.tokens.rotatedAt[role]), token: this.tokens[role] } : { rotatedAt: iso(this.tokens.rotatedAt[role]) };
    return {
      clusterId: this.cluster.clusterId,
      createdAt: iso(this.cluster.createdAt),
      certExpiry: formatDuration(this.cluster.certExpiryMs),
      certExpiryMs: this.cluster.certExpiryMs,
      advertiseAddr: this.cluster.advertiseAddr,
      ca: {
        digest: this.digestHex,
        subject: this.root.subject.split('\n').join(', '),
        notAfter: iso(Date.parse(this.root.validTo)),
        external: this.issuer.external,
        externalUrls: (this.caRecord.external ?? []).map((ca) => ca.url),
      },
      joinTokens: { worker: token('worker'), manager: token('manager') },
    };
  }

  /** Changes the certificate expiry (>= 1h; it applies from the next signing) and/or the external CA list. */
  async updateCluster(patch: { certExpiry?: string; externalCAs?: ExternalCaRecord[] }): Promise<ClusterView> {
    if (patch.certExpiry === undefined && patch.externalCAs === undefined) throw new MusterError('BODY_INVALID', 'nothing to update: send certExpiry and/or externalCAs');
    const certExpiryMs = patch.certExpiry === undefined ? undefined : parseCertExpiry(patch.certExpiry);
    if (patch.externalCAs !== undefined) {
      if (!(this.issuer instanceof CfsslIssuer)) {
        throw new MusterError('BODY_INVALID', 'this cluster signs with its own root key; external CAs apply only to a cluster founded with --external-ca');
      }
      if (patch.externalCAs.length === 0) throw new MusterError('BODY_INVALID', 'at least one external CA is needed');
      const caRecord: CaRecord = { ...this.caRecord, external: patch.externalCAs };
      await this.deps.store.putCa(caRecord);
      this.caRecord = caRecord;
      this.issuer.setCas(patch.externalCAs);
      this.deps.logger.info({ urls: patch.externalCAs.map((ca) => ca.url) }, 'external CAs changed');
    }
    if (certExpiryMs !== undefined) {
      this.cluster = { ...this.cluster, certExpiryMs };
      await this.deps.store.putCluster(this.cluster);
      this.deps.logger.info({ certExpiry: formatDuration(certExpiryMs) }, 'certificate expiry changed');
    }
    return this.clusterView(false);
  }

  /** The current join tokens and the address to join. */
  joinTokens(): JoinTokens {
    return { worker: this.tokens.worker, manager: this.tokens.manager, managerAddr: this.cluster.advertiseAddr };
  }

  /** Records the address nodes are told to join (after a listener on port 0 learns its port). */
  async setAdvertiseAddr(advertiseAddr: string): Promise<void> {
    if (advertiseAddr === this.cluster.advertiseAddr) return;
    this.cluster = { ...this.cluster, advertiseAddr };
    await this.deps.store.putCluster(this.cluster);
  }

  /** Replaces one role's token; the old one is refused from now on. */
  async rotateToken(role: NodeRole): Promise<JoinTokens> {
    const next: TokensRecord = {
      ...this.tokens,
      [role]: generateJoinToken(rootDigest(this.caRecord.rootPem), this.deps.random),
      rotatedAt: { ...this.tokens.rotatedAt, [role]: this.deps.clock.now() },
    };
    await this.deps.store.putTokens(next);
    this.tokens = next;
    this.deps.logger.info({ role }, 'join token rotated');
    return this.joinTokens();
  }

  /** Every node, removed ones included. */
  async listNodes(): Promise<NodeView[]> {
    const nodes = await this.deps.store.listNodes();
    return nodes.sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id)).map((n) => this.view(n));
  }

  /** One node. */
  async getNode(id: string): Promise<NodeView> {
    return this.view(await this.requireNode(id, { allowRemoved: true }));
  }

  /** Marks a node removed: its certificate is refused on every route from now on. */
  async removeNode(id: string, options: { force: boolean }): Promise<NodeView> {
    return this.nodeLock.run('roles', () =>
      this.nodeLock.run(id, async () => {
        const node = await this.requireNode(id);
        if (node.role === 'manager') await this.refuseLastManager(node.id, 'remove');
        if (!options.force && this.status(node) === 'ready') {
          throw new MusterError('NODE_ACTIVE', `node ${id} is still active (last seen ${iso(node.lastSeenAt)})`);
        }
        const removed: NodeRecord = { ...node, removed: true, removedAt: this.deps.clock.now() };
        await this.deps.store.putNode(removed);
        this.deps.logger.info({ nodeId: id }, 'node removed');
        return this.view(removed);
      }),
    );
  }

  /** A node removing itself (`muster leave`). */
  async leave(caller: Caller): Promise<NodeView> {
    return this.removeNode(caller.nodeId, { force: true });
  }

  /** Promotes or demotes a node; it gets the new role on its next renewal (it is told to renew now). */
  async setRole(id: string, role: NodeRole): Promise<NodeView> {
    return this.nodeLock.run('roles', () =>
      this.nodeLock.run(id, async () => {
        const node = await this.requireNode(id);
        if (node.role === role) return this.view(node);
        if (role === 'worker') await this.refuseLastManager(node.id, 'demote');
        const changed: NodeRecord = { ...node, role };
        await this.deps.store.putNode(changed);
        this.deps.logger.info({ nodeId: id, role }, role === 'manager' ? 'node promoted' : 'node demoted');
        return this.view(changed);
      }),
    );
  }

  /** Issues an API-user certificate (Flocker's create-api-certificate): OU=swarm-admin, clientAuth only. */
  async issueUser(name: string, csrPem: string): Promise<UserResponse> {
    const csr = parseCsr(csrPem);
    if (ID_PATTERN.test(name)) {
      throw new MusterError('BODY_INVALID', 'a user name may not have the shape of a node ID', { hint: 'pick a name such as alice or ci-bot' });
    }
    const now = this.deps.clock.now();
    const certificate = await this.issue({ csrPem, csr, role: 'admin', subject: name });
    await this.deps.store.putCertificate(certificateRecord(name, 'admin', 'user', now, certificate));
    this.deps.logger.info({ user: name, serial: certificate.serial, notAfter: iso(certificate.notAfter) }, 'API user certificate issued');
    return { name, clusterId: this.cluster.clusterId, certificate: certificate.certPem, rootCA: this.caRecord.rootPem, notAfter: iso(certificate.notAfter) };
  }

  /** Revokes every certificate issued to API user `name`; they are refused from now on. */
  async revokeUser(name: string): Promise<UserRevoked> {
    return this.nodeLock.run(`user:${name}`, async () => {
      const now = this.deps.clock.now();
      const issued = (await this.deps.store.listCertificates()).filter((c) => c.role === 'admin' && c.subject === name);
      if (issued.length === 0) throw new MusterError('USER_NOT_FOUND', `no API-user certificate named ${name.slice(0, 64)}`);
      const live = issued.filter((c) => c.revokedAt === undefined);
      for (const cert of live) await this.deps.store.putCertificate({ ...cert, revokedAt: now });
      this.deps.logger.info({ user: name, revoked: live.length }, 'API user revoked');
      return { name, revoked: live.length, serials: live.map((c) => c.serial) };
    });
  }

  private issue(params: { csrPem: string; csr: ReturnType<typeof parseCsr>; role: CertRole; subject: string }): Promise<IssuedCertificate> {
    return this.issuer.issue({
      csrPem: params.csrPem,
      csr: params.csr,
      role: params.role,
      commonName: params.subject,
      clusterId: this.cluster.clusterId,
      hosts: params.role === 'manager' ? [this.advertiseHost] : [],
      validityMs: this.cluster.certExpiryMs,
    });
  }

  private async refuseLastManager(id: string, action: 'remove' | 'demote'): Promise<void> {
    const managers = (await this.deps.store.listNodes()).filter((n) => n.role === 'manager' && !n.removed && n.id !== id);
    if (managers.length === 0) {
      throw new MusterError('LAST_MANAGER', `cannot ${action} ${id}: it is the last manager of the cluster`, { hint: 'promote another node first' });
    }
  }

  private async requireNode(id: string, options: { allowRemoved?: boolean } = {}): Promise<NodeRecord> {
    const node = ID_PATTERN.test(id) ? await this.deps.store.getNode(id) : undefined;
    if (node === undefined) throw new MusterError('NODE_NOT_FOUND', `no node ${id.slice(0, 64)}`);
    if (node.removed && options.allowRemoved !== true) throw new MusterError('NODE_REMOVED', `node ${id} has been removed`);
    return node;
  }

  private async touch(id: string): Promise<NodeRecord> {
    return this.nodeLock.run(id, async () => {
      const node = await this.requireNode(id);
      const now = this.deps.clock.now();
      if (now - node.lastSeenAt < LAST_SEEN_WRITE_MS) return node;
      const seen = { ...node, lastSeenAt: now };
      await this.deps.store.putNode(seen);
      return seen;
    });
  }

  private status(node: NodeRecord): NodeView['status'] {
    if (node.removed) return 'removed';
    return this.deps.clock.now() - node.lastSeenAt <= NODE_DOWN_AFTER_MS ? 'ready' : 'down';
  }

  private view(node: NodeRecord): NodeView {
    return {
      id: node.id,
      role: node.role,
      hostname: node.hostname,
      labels: node.labels,
      status: this.status(node),
      certRole: node.certRole,
      certSerial: node.certSerial,
      certNotAfter: iso(node.certNotAfter),
      createdAt: iso(node.createdAt),
      lastSeenAt: iso(node.lastSeenAt),
      removed: node.removed,
    };
  }

  private nodeCertificateResponse(node: NodeRecord, certificate: IssuedCertificate): NodeCertificateResponse {
    return {
      nodeId: node.id,
      role: node.role,
      clusterId: this.cluster.clusterId,
      certificate: certificate.certPem,
      rootCA: this.caRecord.rootPem,
      notAfter: iso(certificate.notAfter),
      renewAfter: iso(certificate.notBefore + (certificate.notAfter - certificate.notBefore) / 2),
    };
  }
}

function newNodeRecord(p: { id: string; role: NodeRole; hostname: string; labels: Record<string, string>; now: number; certificate: IssuedCertificate }): NodeRecord {
  return {
    schema: SCHEMA_VERSION,
    id: p.id,
    role: p.role,
    hostname: p.hostname,
    labels: p.labels,
    createdAt: p.now,
    lastSeenAt: p.now,
    certSerial: p.certificate.serial,
    certNotAfter: p.certificate.notAfter,
    certRole: p.role,
    removed: false,
  };
}

function certificateRecord(subject: string, role: CertRole, kind: IssueKind, now: number, certificate: IssuedCertificate): CertificateRecord {
  return { schema: SCHEMA_VERSION, serial: certificate.serial, subject, role, kind, issuedAt: now, notBefore: certificate.notBefore, notAfter: certificate.notAfter };
}
