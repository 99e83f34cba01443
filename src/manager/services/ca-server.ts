/**
 * The CA server (SwarmKit's ca/server.go): admits nodes that present a join
 * token, renews node certificates, and issues and revokes API-user
 * certificates. The manager decides every identity field; the CSR gives
 * only its key. A node record is committed before its certificate leaves,
 * in the same store transaction that checks the token and the settings it
 * was issued under, so a rotated token or a shortened expiry applies on
 * every manager from the moment the change was acknowledged. The
 * certificate is signed once, before that transaction: its reruns after a
 * conflict reuse it, and refuse it if what it was signed under changed.
 */
import type { Clock } from '../../core/clock.js';
import { failpoint } from '../../core/failpoint.js';
import { MusterError, isMusterError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Random } from '../../core/random.js';
import type { CertRole, NodeRole } from '../../core/roles.js';
import { formatHostPort, parseHostPort } from '../../core/address.js';
import { MIN_CERT_EXPIRY_MS, iso, parseCertExpiry } from '../../core/duration.js';
import { parseCsr, type ParsedCsr } from '../../pki/csr.js';
import { LEAF_BACKDATE_MS, issuedAt, type IssuedCertificate } from '../../pki/issue.js';
import type { AdminCa } from './admin-ca.js';
import { matchJoinToken, parseJoinToken } from '../../token/join-token.js';
import { KEYS, transact, type ClusterStore, type Entry, type Tx } from '../../store/cluster-store.js';
import { SCHEMA_VERSION, type CaRecord, type CertificateRecord, type ClusterRecord, type IssueKind, type NodeRecord } from '../../store/records.js';
import type {
  JoinPreflight,
  JoinRequest,
  ManagedAccess,
  ManagerBundle,
  NodeCertificateResponse,
  RenewRequest,
  ServiceCertificateRequest,
  ServiceCertificateResponse,
  UserRenewRequest,
  UserRequest,
  UserResponse,
  UserRevoked,
} from '../../api/schemas.js';
import type { SanPolicy } from './san-policy.js';
import { isServiceName } from '../../core/san-pattern.js';
import { who, type Caller } from '../state/caller.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { FailureLimiter } from './failure-limiter.js';
import type { Membership } from '../state/membership.js';
import { addManager } from '../state/managers-index.js';
import type { Audit } from './audit.js';
import type { Metrics } from './metrics.js';
import { supersede, type Revocations } from './revocations.js';
import type { ScopedTokens } from './scoped-tokens.js';
import { isStoreUserName } from '../../store/etcd-access.js';
import { ETCD_CLIENT_PORT, ETCD_PEER_PORT, type ManagedMembership, type MemberAddrs } from '../../store/managed-etcd.js';
import { grantDataKey, type DataKeyRing } from '../state/data-key.js';
import { certificateSha256 } from '../../pki/certificate.js';

/** What the CA server works with. */
export interface CaServerDeps {
  state: ClusterState;
  store: ClusterStore;
  membership: Membership;
  limiter: FailureLimiter;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** What a new manager needs to serve; undefined on an embedded store, where only one manager can. */
  managerBundle: () => ManagerBundle | undefined;
  scopedTokens: ScopedTokens;
  revocations: Revocations;
  metrics: Metrics;
  audit: Audit;
  /** Where this manager publishes the CRLs (each certificate it signs names its issuer's under it). */
  crlUrl: () => string;
  /** On a managed store: the etcd membership a new manager is added to. */
  storeMembership?: () => ManagedMembership | undefined;
  /** The cluster data key: a manager it admits or renews gets its copy, wrapped to the new certificate, in the same transaction. */
  dataKeys: DataKeyRing;
  /** The admin CA, made ready before an API user is issued a certificate (clusters founded before it get one then). */
  adminCa?: AdminCa;
  /** Which names a node's service certificates may carry. */
  sanPolicy: SanPolicy;
}

/** How a presented token was recognised: one of the two classic tokens, or a scoped one (by ID). */
interface Admission {
  role: NodeRole;
  /** The scoped token's ID; absent for a classic token. */
  scoped?: string;
}

/** A certificate signed before the transaction that records it, and what it was signed under. */
interface Signed {
  certificate: IssuedCertificate;
  /** The settings and CA records (with their versions) it was signed under. */
  cluster: Entry<ClusterRecord>;
  ca: Entry<CaRecord>;
  /** SHA-256 (hex) of the root that signed it. */
  root: string;
}

/**
 * A certificate signed under settings, a root or a node record that changed
 * before the transaction could record it: it is never recorded, and the
 * request signs once more under what is current (at most {@link MAX_SIGNINGS}
 * times in all, so an external CA is asked a bounded number of times, never
 * once per transaction rerun).
 */
class StaleSignature extends MusterError {
  constructor(message: string) {
    super('STORE_CONFLICT', message);
  }
}

/** Signings of one request at most: the first, and two more after what it was signed under changed. */
const MAX_SIGNINGS = 3;

/**
 * Service certificate names a node holds at once (those not yet expired):
 * removing the node lists every one on the CRL in the removal's one
 * transaction (a compare and a write each: at 132 of them etcd refused the
 * Txn of 136 compares and 136 writes, past its 128), and the node record
 * stays small.
 */
export const MAX_SERVICE_CERTS = 32;

/** The node's service certificates still valid at `now`, with the one named `name` (asked for) admitted or refused: SERVICE_LIMIT past {@link MAX_SERVICE_CERTS}. */
function admitService(node: NodeRecord, name: string, now: number): NonNullable<NodeRecord['services']> {
  const live = Object.fromEntries(Object.entries(node.services ?? {}).filter(([, cert]) => cert.notAfter > now));
  if (!(name in live) && Object.keys(live).length >= MAX_SERVICE_CERTS)
    throw new MusterError('SERVICE_LIMIT', `node ${node.id} already holds ${MAX_SERVICE_CERTS} service certificates that have not expired`);
  return live;
}

/** An API user's certificates revoked per transaction: a compare and a write for the record, the same for its denylist entry. */
const USER_REVOKE_BATCH = 40;

/** The code an error is counted under in the metrics. */
const codeOf = (error: unknown): string => (isMusterError(error) ? error.code : 'INTERNAL');

/** The record of a certificate just issued. */
export function certificateRecord(subject: string, role: CertRole, kind: IssueKind, now: number, certificate: IssuedCertificate): CertificateRecord {
  return {
    schema: SCHEMA_VERSION,
    serial: certificate.serial,
    subject,
    role,
    kind,
    issuedAt: now,
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
  };
}

/**
 * Runs a join's signing with an external CA's failures told without the CA's
 * address or its words: a joining node is not yet trusted, and the CA's URL
 * is the cluster's business. The details were logged where they happened.
 */
async function withoutCaDetails<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (isMusterError(error, 'EXTERNAL_CA_UNAVAILABLE')) throw new MusterError('EXTERNAL_CA_UNAVAILABLE', "the cluster's external CA could not be reached");
    if (isMusterError(error, 'EXTERNAL_CA_ERROR'))
      throw new MusterError('EXTERNAL_CA_ERROR', "the cluster's external CA refused to sign; the managers' logs say why", { hint: 'ask the cluster admin' });
    throw error;
  }
}

/** The SAN host of a manager address (host:port). */
function hostOf(addr: string | undefined): string[] {
  return addr === undefined ? [] : [parseHostPort(addr).host];
}

/**
 * The SAN hosts of a manager's certificate: where it serves the API and, on a
 * managed store, where its etcd member is reached by peers, and loopback
 * (its own manager reaches its member there).
 */
function managerHosts(managerAddr: string | undefined, member: MemberAddrs | undefined): string[] {
  if (member === undefined) return hostOf(managerAddr);
  return [...new Set([...hostOf(managerAddr), ...hostOf(member.peerAddr), ...hostOf(member.clientAddr), '127.0.0.1'])];
}

/** Where a node promoted on a managed store runs its member: etcd's ports on the host it serves the API on. */
function defaultMemberAddrs(managerAddr: string | undefined): MemberAddrs | undefined {
  if (managerAddr === undefined) return undefined;
  const { host } = parseHostPort(managerAddr);
  return { clientAddr: formatHostPort({ host, port: ETCD_CLIENT_PORT }), peerAddr: formatHostPort({ host, port: ETCD_PEER_PORT }) };
}

/** The earliest moment a node renews `certificate` (the start of the 50–80% window, DESIGN §7), counted from its issue. */
function renewAfterOf(certificate: IssuedCertificate, now: number): number {
  const issued = issuedAt(certificate, now);
  return issued + Math.floor((certificate.notAfter - issued) / 2);
}

/** Issues and renews the cluster's certificates. */
export class CaServer {
  /** Errors already counted and audited by {@link admit}. */
  private readonly refusedAtAdmission = new WeakSet<object>();

  constructor(private readonly deps: CaServerDeps) {}

  /**
   * What a token admits, read against the store: a classic token the cache
   * does not know is checked again after a refresh (it may be newer than the
   * cache); a scoped token is looked up by the ID derived from it.
   */
  private async admissionFor(token: string): Promise<Admission | undefined> {
    const { state, scopedTokens } = this.deps;
    const classic = matchJoinToken(token, state.tokenHashes);
    if (classic !== undefined) return { role: classic };
    const scoped = await scopedTokens.find(token);
    if (scoped !== undefined) return { role: scoped.role, scoped: scoped.id };
    await state.refresh();
    const role = matchJoinToken(token, state.tokenHashes);
    return role === undefined ? undefined : { role };
  }

  /** Checks a token (and that its role can join here) before the node makes a key. */
  async preflight(token: string, sourceAddr: string): Promise<JoinPreflight> {
    const { role } = await this.admit(token, sourceAddr);
    return { role };
  }

  /** What a presented token admits, or the refusal (counted against the source, in the metrics and in the audit trail). */
  private async admit(token: string, sourceAddr: string): Promise<Admission> {
    try {
      return await this.admitOrRefuse(token, sourceAddr);
    } catch (error) {
      this.deps.metrics.joins.inc({ role: 'unknown', result: codeOf(error) });
      // A rate-limited flood is counted, not written line by line: anonymous traffic must not fill the disk.
      if (!isMusterError(error, 'RATE_LIMITED'))
        this.deps.audit.record({ action: 'node.join', token: { id: 'unrecognised', source: sourceAddr }, result: error });
      if (typeof error === 'object' && error !== null) this.refusedAtAdmission.add(error);
      throw error;
    }
  }

  private async admitOrRefuse(token: string, sourceAddr: string): Promise<Admission> {
    const { limiter, logger } = this.deps;
    let malformed: unknown;
    try {
      parseJoinToken(token);
    } catch (error) {
      malformed = error;
    }
    const admission = malformed === undefined ? await this.admissionFor(token.trim()) : undefined;
    if (admission === undefined) {
      // Only failures count, and a valid token always gets through: a NAT
      // neighbour's bad guesses must not lock out a node with the right token.
      const retryMs = limiter.retryAfterMs(sourceAddr);
      if (retryMs > 0) throw new MusterError('RATE_LIMITED', undefined, { details: { retryAfterSeconds: Math.ceil(retryMs / 1000) } });
      limiter.recordFailure(sourceAddr);
      logger.warn({ source: sourceAddr }, 'join refused: token not accepted');
      throw malformed ?? new MusterError('TOKEN_REJECTED');
    }
    if (admission.role === 'manager' && this.deps.managerBundle() === undefined) throw new MusterError('EMBEDDED_STORE');
    return admission;
  }

  /** Admits a node that presents a join token: the token picks the role (and, a scoped one, labels), the manager picks the ID. */
  async join(request: JoinRequest, sourceAddr: string): Promise<NodeCertificateResponse> {
    const { metrics, audit } = this.deps;
    const token = request.token.trim();
    let role = 'unknown';
    let tokenName = 'unrecognised';
    try {
      const admission = await this.admit(request.token, sourceAddr);
      role = admission.role;
      tokenName = admission.scoped ?? admission.role;
      const { node, certificate, member } = await metrics.timeIssuance('join', () => this.admitNode(request, token, admission.role, sourceAddr));
      metrics.joins.inc({ role: node.role, result: 'ok' });
      metrics.inventoryChanged();
      audit.record({
        action: 'node.join',
        token: { id: node.joinToken ?? node.role, source: sourceAddr },
        target: { node: node.id, role: node.role, hostname: node.hostname },
        serial: certificate.serial,
        result: 'ok',
      });
      return await this.answer(node, certificate, node.role === 'manager', member);
    } catch (error) {
      // A refusal at admission was counted and audited there.
      if (!(typeof error === 'object' && error !== null && this.refusedAtAdmission.has(error))) {
        metrics.joins.inc({ role, result: codeOf(error) });
        audit.record({ action: 'node.join', token: { id: tokenName, source: sourceAddr }, result: error });
      }
      throw error;
    }
  }

  /**
   * The join: the certificate is signed once for the role the token admitted,
   * then the transaction commits the node record, and a use of a scoped
   * token, before the certificate leaves.
   */
  private async admitNode(
    request: JoinRequest,
    token: string,
    role: NodeRole,
    sourceAddr: string,
  ): Promise<{ node: NodeRecord; certificate: IssuedCertificate; member?: ManagedAccess }> {
    const { state, store, clock, random, logger, scopedTokens } = this.deps;
    const csr = parseCsr(request.csr);
    const nodeId = newId(random);
    const managerAddr = request.managerAddr;
    const storeMembership = role === 'manager' ? this.deps.storeMembership?.() : undefined;
    const storeMember = storeMembership === undefined ? undefined : (request.storeMember ?? defaultMemberAddrs(managerAddr));
    if (storeMembership !== undefined && storeMember === undefined)
      throw new MusterError('USAGE', 'a manager of a managed store needs an address to serve on', { hint: 'join with --advertise-addr HOST' });
    // Its member joins the store before the node is recorded (a learner until it caught up; a retried join reuses it), so a recorded manager can always serve.
    const member = storeMembership === undefined || storeMember === undefined ? undefined : await storeMembership.admit(nodeId, storeMember);
    failpoint('manager-join:member-added');
    const { node, certificate } = await this.unlessRefused(
      member === undefined || storeMembership === undefined ? undefined : () => storeMembership.remove(nodeId, storeMember?.peerAddr),
      () =>
        this.signAgainWhenStale(async () => {
          const signed = await withoutCaDetails(() =>
            this.sign({ csrPem: request.csr, csr, role, subject: nodeId, hosts: role === 'manager' ? managerHosts(managerAddr, storeMember) : [] }),
          );
          const { certificate } = signed;
          const node = await transact(
            store,
            async (tx) => {
              // The tokens and settings this join is decided under: the commit fails if either changed meanwhile.
              tx.assume(KEYS.tokens, state.entry(KEYS.tokens));
              // The hashes of that same record (read in the same turn): the commit fails if it changed.
              const classic = matchJoinToken(token, state.tokenHashes);
              // A scoped token's use is taken here: two joins racing for the last use cannot both commit.
              const scoped = classic === undefined ? await scopedTokens.spend(tx, token) : undefined;
              // The certificate names the role the token admitted before it was signed: a token that no longer admits it is refused.
              if ((classic ?? scoped?.role) !== role) throw new MusterError('TOKEN_REJECTED');
              this.assumeSigned(tx, signed);
              const now = clock.now();
              const node: NodeRecord = {
                schema: SCHEMA_VERSION,
                id: nodeId,
                role,
                hostname: request.hostname ?? nodeId,
                // The token's labels win: they are what the admin vouched for.
                labels: { ...request.labels, ...scoped?.labels },
                createdAt: now,
                lastSeenAt: now,
                certSerial: certificate.serial,
                certNotAfter: certificate.notAfter,
                certSha256: certificateSha256(certificate.certPem),
                certRole: role,
                certRoot: signed.root,
                removed: false,
                ...(managerAddr === undefined ? {} : { managerAddr }),
                ...(storeMember === undefined ? {} : { storeMember }),
                ...(scoped === undefined ? {} : { joinToken: scoped.id }),
              };
              // The record is committed before the certificate leaves: a node that holds a certificate is always in the store.
              tx.put(KEYS.nodes.ref(nodeId), node);
              tx.put(KEYS.certificates.ref(certificate.serial), certificateRecord(nodeId, role, 'join', now, certificate));
              if (role === 'manager') await addManager(tx, nodeId);
              if (role === 'manager') await grantDataKey(tx, this.deps.dataKeys, nodeId, certificate.certPem);
              return node;
            },
            { beforeRetry: () => state.refresh() },
          );
          return { node, certificate };
        }),
    );
    logger.info(
      {
        nodeId,
        role: node.role,
        hostname: node.hostname,
        serial: certificate.serial,
        notAfter: iso(certificate.notAfter),
        source: sourceAddr,
        ...(node.joinToken === undefined ? {} : { tokenId: node.joinToken }),
      },
      'node joined',
    );
    return { node, certificate, ...(member === undefined ? {} : { member }) };
  }

  /** Runs `join`; when it fails, `undo` takes back what was done before it (a learner added for a manager that will not be recorded). */
  private async unlessRefused<T>(undo: (() => Promise<void>) | undefined, join: () => Promise<T>): Promise<T> {
    try {
      return await join();
    } catch (error) {
      await undo?.().catch((cleanup: unknown) => {
        this.deps.logger.warn(
          { err: cleanup instanceof Error ? cleanup.message : String(cleanup) },
          'a manager join failed and its etcd learner could not be removed; a later manager join removes it',
        );
      });
      throw error;
    }
  }

  /** Re-issues a node's certificate for a fresh key; the role comes from the store, so promotions and demotions apply. */
  async renew(
    caller: Caller,
    request: RenewRequest,
    issued?: (node: NodeRecord, certificate: IssuedCertificate, root: string) => void,
  ): Promise<NodeCertificateResponse> {
    const { metrics, audit } = this.deps;
    let renewed;
    try {
      renewed = await metrics.timeIssuance('renew', () => this.reissue(caller.node ?? caller.nodeId, request));
    } catch (error) {
      metrics.renewals.inc({ role: caller.node?.role ?? caller.role, result: codeOf(error) });
      audit.record({ action: 'node.renew', caller, target: { node: caller.nodeId }, result: error });
      throw error;
    }
    const { node, certificate, root } = renewed;
    issued?.(node, certificate, root);
    metrics.renewals.inc({ role: node.role, result: 'ok' });
    audit.record({
      action: 'node.renew',
      caller,
      target: { node: node.id, role: node.role },
      serial: certificate.serial,
      result: 'ok',
      details: caller.expired ? { afterExpiry: true } : undefined,
    });
    // A renewal on time is routine: at debug (100,000 nodes on 10-minute certificates renew 256 times a second, past
    // journald's default rate limit of 10,000 lines in 30 s); the audit trail has every one. One after expiry is news.
    const fields = { nodeId: node.id, role: node.role, serial: certificate.serial, notAfter: iso(certificate.notAfter) };
    if (caller.expired) this.deps.logger.info({ ...fields, afterExpiry: true }, 'node renewed after its certificate expired');
    else this.deps.logger.debug(fields, 'node renewed');
    // A node that becomes a manager learns here how to serve.
    return this.answer(node, certificate, node.role === 'manager' && caller.role !== 'manager');
  }

  /**
   * A manager re-issuing its own certificate at start, from the key it holds
   * (its certificate expired while it was down, or its advertise address
   * changed and must be in the certificate). Only for this manager's own node.
   */
  async reissueOwn(nodeId: string, request: RenewRequest): Promise<{ certPem: string; notAfter: number }> {
    const { node, certificate } = await this.reissue(nodeId, request);
    if (node.role !== 'manager') throw new MusterError('AUTH_FORBIDDEN', 'this node is no longer a manager');
    this.deps.audit.record({ action: 'manager.reissue-own', target: { node: nodeId }, serial: certificate.serial, result: 'ok' });
    this.deps.logger.info(
      { nodeId, serial: certificate.serial, notAfter: iso(certificate.notAfter), managerAddr: node.managerAddr },
      'this manager re-issued its own certificate',
    );
    return { certPem: certificate.certPem, notAfter: certificate.notAfter };
  }

  /**
   * Signs a node's new certificate once, for the role and host of its record
   * as the caller's authorisation read it (`known`; read here when absent),
   * then records it in a transaction that refuses it if the node changed in
   * what the certificate says.
   */
  private async reissue(known: NodeRecord | string, request: RenewRequest): Promise<{ node: NodeRecord; certificate: IssuedCertificate; root: string }> {
    const { state, store, clock } = this.deps;
    const csr = parseCsr(request.csr);
    return this.signAgainWhenStale(async (signing) => {
      // After a stale signing, the record as the store holds it now (the caller's copy is what changed).
      const nodeId = typeof known === 'string' ? known : known.id;
      const before = typeof known === 'string' || signing > 1 ? (await store.get(KEYS.nodes.ref(nodeId)))?.value : known;
      if (before === undefined) throw new MusterError('NODE_NOT_FOUND');
      if (before.removed) throw new MusterError('NODE_REMOVED');
      const hostsOf = (node: NodeRecord): string[] =>
        node.role === 'manager' ? managerHosts(request.managerAddr ?? node.managerAddr, this.memberOf(node, request)) : [];
      const signed = await this.sign({ csrPem: request.csr, csr, role: before.role, subject: before.id, hosts: hostsOf(before) });
      const { certificate } = signed;
      return transact(
        store,
        async (tx) => {
          const current = await tx.get(KEYS.nodes.ref(before.id));
          if (current === undefined) throw new MusterError('NODE_NOT_FOUND');
          if (current.removed) throw new MusterError('NODE_REMOVED');
          // A promotion, demotion or new manager address since the signing: the certificate says otherwise, so it is refused (the node renews again).
          if (current.role !== before.role || hostsOf(current).join(',') !== hostsOf(before).join(',')) {
            throw new StaleSignature("the node's role or address changed while its certificate was signed");
          }
          this.assumeSigned(tx, signed);
          const now = clock.now();
          const managerAddr = request.managerAddr ?? current.managerAddr;
          // However often the node renews, its record keeps a bounded list of earlier certificates (what a demotion lists in one transaction).
          const superseded = await this.deps.revocations.shed(tx, current.id, supersede(current, now) ?? []);
          const storeMember = current.role === 'manager' ? this.memberOf(current, request) : undefined;
          const node: NodeRecord = {
            ...current,
            ...(storeMember === undefined ? {} : { storeMember }),
            certSerial: certificate.serial,
            certNotAfter: certificate.notAfter,
            certSha256: certificateSha256(certificate.certPem),
            certRole: current.role,
            certRoot: signed.root,
            lastSeenAt: now,
            superseded,
            ...(managerAddr === undefined ? {} : { managerAddr }),
          };
          tx.put(KEYS.nodes.ref(node.id), node);
          tx.put(KEYS.certificates.ref(certificate.serial), certificateRecord(node.id, node.role, 'renew', now, certificate));
          if (node.role === 'manager') await grantDataKey(tx, this.deps.dataKeys, node.id, certificate.certPem);
          return { node, certificate, root: signed.root };
        },
        { beforeRetry: () => state.refresh() },
      );
    });
  }

  /**
   * Issues a certificate for one of the calling node's services (issue 28):
   * OU=muster-service, which no route of muster's API accepts as an
   * identity; serverAuth only, or clientAuth only for a client; the names
   * the SAN policy allows. The CN is `<node ID>/<service>`, never a host name
   * or a node ID: a managed etcd reads a client certificate's CN as its user.
   * Recorded (GET /v1/certificates) and audited like every issuance.
   */
  async issueService(caller: Caller, request: ServiceCertificateRequest): Promise<ServiceCertificateResponse> {
    const { state, store, clock, logger, audit, sanPolicy } = this.deps;
    const target = { node: caller.nodeId, service: request.name.slice(0, 64) };
    try {
      if (!isServiceName(request.name))
        throw new MusterError('SERVICE_NAME_INVALID', `${JSON.stringify(request.name.slice(0, 64))} is not a valid service certificate name`);
      const known = caller.node;
      if (known === undefined) throw new MusterError('AUTH_FORBIDDEN', 'only a node asks for service certificates');
      const csr = parseCsr(request.csr);
      const { certificate, sans } = await this.deps.metrics.timeIssuance('service', () =>
        this.signAgainWhenStale(async (signing) => {
          const before = signing > 1 ? (await store.get(KEYS.nodes.ref(known.id)))?.value : known;
          if (before === undefined) throw new MusterError('NODE_NOT_FOUND');
          if (before.removed) throw new MusterError('NODE_REMOVED');
          admitService(before, request.name, clock.now()); // before signing; the transaction asks again
          const sans = await sanPolicy.check(before, request.sans);
          const signed = await this.sign({
            csrPem: request.csr,
            csr,
            role: 'service',
            subject: `${before.id}/${request.name}`,
            hosts: sans,
            ...(request.client === true ? { clientOnly: true } : {}),
          });
          const { certificate } = signed;
          await transact(
            store,
            async (tx) => {
              const current = await tx.get(KEYS.nodes.ref(before.id));
              if (current === undefined) throw new MusterError('NODE_NOT_FOUND');
              if (current.removed) throw new MusterError('NODE_REMOVED');
              // The names were checked against this record: a hostname, address or pattern changed since is checked again.
              if (
                current.hostname !== before.hostname ||
                current.managerAddr !== before.managerAddr ||
                JSON.stringify([current.sanPatterns, current.labels]) !== JSON.stringify([before.sanPatterns, before.labels])
              ) {
                throw new StaleSignature("the node's names changed while its service certificate was signed");
              }
              this.assumeSigned(tx, signed);
              const now = clock.now();
              // Expired ones leave the record (shown as expired all the same: GET /v1/certificates reads their own records).
              const live = admitService(current, request.name, now);
              tx.put(KEYS.nodes.ref(current.id), {
                ...current,
                services: { ...live, [request.name]: { serial: certificate.serial, notAfter: certificate.notAfter } },
              });
              tx.put(KEYS.certificates.ref(certificate.serial), {
                ...certificateRecord(current.id, 'service', 'service', now, certificate),
                service: request.name,
                sans,
              });
            },
            { beforeRetry: () => state.refresh() },
          );
          return { certificate, sans };
        }),
      );
      audit.record({ action: 'service.issue', caller, target, serial: certificate.serial, result: 'ok', details: { sans, client: request.client === true } });
      logger.info(
        { nodeId: caller.nodeId, service: request.name, sans, serial: certificate.serial, notAfter: iso(certificate.notAfter) },
        'service certificate issued',
      );
      const adminAnchor = await this.deps.adminCa?.anchor().catch(() => undefined);
      return {
        name: request.name,
        serial: certificate.serial,
        sans,
        certificate: certificate.certPem,
        rootCA: state.trust.bundlePem,
        notAfter: iso(certificate.notAfter),
        ...(adminAnchor === undefined ? {} : { adminAnchor }),
      };
    } catch (error) {
      audit.record({ action: 'service.issue', caller, target, result: error });
      throw error;
    }
  }

  /** Issues an API-user certificate (Flocker's create-api-certificate): OU=swarm-admin, clientAuth only. */
  async issueUser(request: UserRequest, caller?: Caller): Promise<UserResponse> {
    const { state, store, clock, logger } = this.deps;
    // A managed store (etcd) reads a client certificate's CN as its user: no API user may be named like a manager or etcd's root.
    if (isStoreUserName(request.name)) {
      throw new MusterError('BODY_INVALID', `a user name may not be 'root' or have the shape of a node ID`, { hint: 'pick a name such as alice or ci-bot' });
    }
    const csr = parseCsr(request.csr);
    const validityMs = request.expiry === undefined ? undefined : parseCertExpiry(request.expiry);
    await this.deps.adminCa?.ensure();
    const certificate = await this.deps.metrics
      .timeIssuance('user', () =>
        this.signAgainWhenStale(async () => {
          const signed = await this.sign({
            csrPem: request.csr,
            csr,
            role: 'admin',
            subject: request.name,
            hosts: [],
            ...(validityMs === undefined ? {} : { validityMs }),
          });
          return transact(
            store,
            async (tx) => {
              this.assumeSigned(tx, signed);
              tx.put(KEYS.certificates.ref(signed.certificate.serial), certificateRecord(request.name, 'admin', 'user', clock.now(), signed.certificate));
              return signed.certificate;
            },
            { beforeRetry: () => state.refresh() },
          );
        }),
      )
      .catch((error: unknown) => {
        this.deps.audit.record({ action: 'user.create', caller, target: { user: request.name }, result: error });
        throw error;
      });
    this.deps.audit.record({ action: 'user.create', caller, target: { user: request.name }, serial: certificate.serial, result: 'ok' });
    logger.info({ user: request.name, serial: certificate.serial, notAfter: iso(certificate.notAfter), ...who(caller) }, 'API user certificate issued');
    return {
      name: request.name,
      clusterId: state.clusterId,
      certificate: certificate.certPem,
      rootCA: state.trust.bundlePem,
      notAfter: iso(certificate.notAfter),
    };
  }

  /**
   * Renews the calling API user's certificate for a fresh key: same name,
   * same lifetime as the certificate presented, issued by the admin CA. The
   * authoriser has refused a revoked or expired certificate; the transaction
   * requires the presented certificate's record unchanged, so a revocation
   * that lands meanwhile refuses the renewal too (CERT_REVOKED).
   */
  async renewUser(caller: Caller, request: UserRenewRequest): Promise<UserResponse> {
    const { state, store, clock, logger, audit } = this.deps;
    const name = caller.nodeId;
    const ref = KEYS.certificates.ref(caller.serial);
    try {
      if (caller.role !== 'admin') throw new MusterError('AUTH_FORBIDDEN', 'only an API user renews its own certificate here');
      const csr = parseCsr(request.csr);
      // The lifetime the certificate was given (without the backdating), so short-lived users stay short-lived.
      const validityMs = Math.max(MIN_CERT_EXPIRY_MS, caller.notAfter - caller.notBefore - LEAF_BACKDATE_MS);
      await this.deps.adminCa?.ensure();
      const certificate = await this.deps.metrics.timeIssuance('user', () =>
        this.signAgainWhenStale(async () => {
          const signed = await this.sign({ csrPem: request.csr, csr, role: 'admin', subject: name, hosts: [], validityMs });
          return transact(
            store,
            async (tx) => {
              // Read in the transaction: a revocation committed before this renewal refuses it.
              const presented = await tx.get(ref);
              if (presented === undefined || presented.role !== 'admin' || presented.subject !== name)
                throw new MusterError('AUTH_FORBIDDEN', 'this API-user certificate is not one this cluster issued');
              if (presented.revokedAt !== undefined) throw new MusterError('CERT_REVOKED');
              this.assumeSigned(tx, signed);
              tx.put(KEYS.certificates.ref(signed.certificate.serial), certificateRecord(name, 'admin', 'user', clock.now(), signed.certificate));
              return signed.certificate;
            },
            { beforeRetry: () => state.refresh() },
          );
        }),
      );
      audit.record({ action: 'user.renew', caller, target: { user: name }, serial: certificate.serial, result: 'ok', details: { previous: caller.serial } });
      logger.info({ user: name, serial: certificate.serial, previous: caller.serial, notAfter: iso(certificate.notAfter) }, 'API user renewed its certificate');
      return { name, clusterId: state.clusterId, certificate: certificate.certPem, rootCA: state.trust.bundlePem, notAfter: iso(certificate.notAfter) };
    } catch (error) {
      audit.record({ action: 'user.renew', caller, target: { user: name }, result: error });
      throw error;
    }
  }

  /**
   * Revokes every certificate issued to API user `name`; they are refused
   * from now on. USER_REVOKE_BATCH of them per transaction (a user given a
   * certificate by every CI run may hold hundreds, past etcd's 128
   * operations in one Txn); a revocation cut short between two is finished
   * by running it again.
   */
  async revokeUser(name: string, caller?: Caller): Promise<UserRevoked> {
    const { store, clock, logger, revocations, audit } = this.deps;
    const serials: string[] = [];
    try {
      for (;;) {
        const batch = await transact(store, async (tx) => {
          const issued = (await store.list(KEYS.certificates)).filter((c) => c.value.role === 'admin' && c.value.subject === name);
          if (issued.length === 0) throw new MusterError('USER_NOT_FOUND', `no API-user certificate named ${name.slice(0, 64)}`);
          const live = issued.filter((c) => c.value.revokedAt === undefined).slice(0, USER_REVOKE_BATCH);
          for (const entry of live) {
            const ref = KEYS.certificates.ref(entry.id);
            tx.assume(ref, entry);
            tx.put(ref, { ...entry.value, revokedAt: clock.now() });
          }
          // The same transaction lists them on the CRL, so that verifiers outside the cluster refuse them too.
          await revocations.revoke(
            tx,
            live.map((c) => ({ serial: c.value.serial, subject: name, role: 'admin', notAfter: c.value.notAfter })),
            'privilegeWithdrawn',
          );
          return live.map((c) => c.value.serial);
        });
        serials.push(...batch);
        if (batch.length < USER_REVOKE_BATCH) break;
      }
    } catch (error) {
      audit.record({ action: 'user.revoke', caller, target: { user: name.slice(0, 64) }, ...(serials.length > 0 ? { serials } : {}), result: error });
      throw error;
    }
    audit.record({ action: 'user.revoke', caller, target: { user: name }, serials, result: 'ok' });
    logger.info({ user: name, revoked: serials.length, ...who(caller) }, 'API user revoked');
    return { name, revoked: serials.length, serials };
  }

  /**
   * Signs once, before the transaction that records the certificate:
   * `transact` reruns its function on every commit conflict (up to 32
   * times), and an external CA must not be asked to sign again for each
   * rerun. The settings and root it signs under are those of this manager's
   * view; the transaction requires them unchanged ({@link assumeSigned}).
   */
  private async sign(params: {
    csrPem: string;
    csr: ParsedCsr;
    role: CertRole;
    subject: string;
    hosts: string[];
    validityMs?: number;
    clientOnly?: boolean;
  }): Promise<Signed> {
    const { state } = this.deps;
    // One synchronous snapshot: the signer is the one made from this very CA record.
    const cluster = state.entry(KEYS.cluster);
    const ca = state.entry(KEYS.ca);
    const root = state.trust.signing.digestHex;
    const certificate = await state.signer.issue({
      csrPem: params.csrPem,
      csr: params.csr,
      role: params.role,
      commonName: params.subject,
      clusterId: cluster.value.clusterId,
      hosts: params.hosts,
      ...(params.clientOnly === true ? { clientOnly: true } : {}),
      validityMs: params.validityMs ?? cluster.value.certExpiryMs,
      crlUrl: this.deps.crlUrl(),
    });
    return { certificate, cluster, ca, root };
  }

  /**
   * Runs a sign-then-record `attempt` again when what it signed under changed
   * before the record (StaleSignature), at most MAX_SIGNINGS times in all;
   * then STORE_CONFLICT, which the node retries.
   */
  private async signAgainWhenStale<T>(attempt: (signing: number) => Promise<T>): Promise<T> {
    for (let signing = 1; ; signing++) {
      try {
        return await attempt(signing);
      } catch (error) {
        if (!(error instanceof StaleSignature) || signing >= MAX_SIGNINGS) throw error;
        await this.deps.state.refresh();
      }
    }
  }

  /**
   * In the transaction that records a certificate: the commit requires the
   * settings and root it was signed under. Once they changed (a new expiry,
   * a rotation, or this manager's view was behind the store), the
   * certificate is refused: {@link signAgainWhenStale} signs once more.
   */
  private assumeSigned(tx: Tx, signed: Signed): void {
    const { state } = this.deps;
    if (state.entry(KEYS.cluster).version !== signed.cluster.version || state.entry(KEYS.ca).version !== signed.ca.version) {
      throw new StaleSignature('the cluster settings or root changed while the certificate was signed');
    }
    tx.assume(KEYS.cluster, signed.cluster);
    tx.assume(KEYS.ca, signed.ca);
  }

  /**
   * Where a manager's etcd member is reached, on a managed store: as it
   * joined (never moved later: its peers know it there); else, for a node
   * promoted now, where its renewal says (its join's --etcd-* flags), else
   * etcd's ports on its API host.
   */
  private memberOf(node: NodeRecord, request: RenewRequest): MemberAddrs | undefined {
    if (this.deps.storeMembership?.() === undefined) return undefined;
    return node.storeMember ?? request.storeMember ?? defaultMemberAddrs(request.managerAddr ?? node.managerAddr);
  }

  private async answer(node: NodeRecord, certificate: IssuedCertificate, withBundle: boolean, member?: ManagedAccess): Promise<NodeCertificateResponse> {
    const { state, membership } = this.deps;
    const response: NodeCertificateResponse = {
      nodeId: node.id,
      role: node.role,
      clusterId: state.clusterId,
      certificate: certificate.certPem,
      rootCA: state.trust.bundlePem,
      notAfter: iso(certificate.notAfter),
      // Half-way through the span from the issue, not from the backdated NotBefore (a 5-minute certificate's would be in the past).
      renewAfter: iso(renewAfterOf(certificate, this.deps.clock.now())),
      managers: await membership.addresses(),
    };
    if (state.trust.crossSigned.length > 0) response.crossSigned = state.trust.crossSigned.join('');
    const bundle = withBundle ? this.deps.managerBundle() : undefined;
    if (bundle !== undefined) response.manager = bundle;
    const storeMembership = withBundle ? this.deps.storeMembership?.() : undefined;
    if (bundle !== undefined && storeMembership !== undefined) {
      // A manager on a managed store: its member joins the store's (a learner until it caught up), and its certificate opens it.
      const addrs = node.storeMember ?? defaultMemberAddrs(node.managerAddr);
      if (addrs === undefined)
        throw new MusterError('USAGE', 'a manager of a managed store needs an address to serve on', { hint: 'join with --advertise-addr HOST' });
      response.manager = { dataKey: bundle.dataKey, member: member ?? (await storeMembership.admit(node.id, addrs)) };
    }
    return response;
  }
}
