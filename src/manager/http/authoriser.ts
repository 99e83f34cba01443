/**
 * Who is calling (SwarmKit's ca/auth.go): a client certificate is an identity
 * only if it chains to the cluster root, is within its validity, names this
 * cluster, and its subject is still in good standing in the store: a node
 * that exists and was not removed, holding the certificate its record names
 * (or the one before it), an API user whose certificate the store records
 * as issued and not revoked.
 */
import type { X509Certificate } from 'node:crypto';
import type { IssuedCertificate } from '../../pki/issue.js';
import type { Clock } from '../../core/clock.js';
import { MusterError } from '../../core/errors.js';
import { DEFAULT_RENEW_GRACE_MS } from '../../api/routes.js';
import { isNodeRole, type CertRole } from '../../core/roles.js';
import { verifyPeerCertificate, type PeerIdentity } from '../../pki/peer.js';
import { KEYS, type ClusterStore } from '../../store/cluster-store.js';
import type { NodeRecord } from '../../store/records.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { Caller } from '../state/caller.js';
import { IssuedPeer, type PeerCert } from './peer.js';

/** What a route accepts beyond a valid certificate. */
export interface AuthOptions {
  /** A node certificate that expired less than the cluster's renewal grace ago (the TLS handshake proved its key). */
  expiredWithinGrace?: boolean;
}

/**
 * A certificate's chain, checked once per connection (issue 20): the TLS
 * layer hands the same certificate object to every request of a kept-alive
 * connection (app.ts), so a session's long polls verify it once. The check is
 * done again when the trusted roots change (a rotation), and its validity
 * window is compared with the time on every request. The store is still
 * read on every request: removal, demotion and revocation apply to the next
 * request of an open connection, as to a new one.
 */
export interface Verified {
  trust: ClusterState['trust'];
  identity: PeerIdentity;
  issuer: X509Certificate;
  /** The certificate's SHA-256, once per connection (the node record pins it). */
  fingerprint: string;
}

/** SHA-256 (hex) of a certificate's DER, as node records pin it. */
function fingerprintOf(cert: X509Certificate): string {
  return cert.fingerprint256.replaceAll(':', '').toLowerCase();
}

/** Decides who a client certificate belongs to and what it may call. */
export class Authoriser {
  private readonly verified = new WeakMap<X509Certificate, Verified>();

  constructor(private readonly deps: { state: ClusterState; store: ClusterStore; clock: Clock }) {}

  /**
   * The check a certificate this manager just issued (`certificate`, to
   * `node`, by the root whose digest is `root`) passes, as of the roots it
   * was signed under: it goes on speaking for the connection it was renewed
   * on without being parsed (peer.ts). Undefined when the roots changed.
   */
  issued(node: NodeRecord, certificate: IssuedCertificate, root: string): Verified | undefined {
    const { state } = this.deps;
    const trust = state.trust;
    if (trust.signing.digestHex !== root || node.certSha256 === undefined) return undefined;
    const { serial, notBefore, notAfter } = certificate;
    return {
      trust,
      issuer: trust.signing.cert,
      fingerprint: node.certSha256,
      identity: { nodeId: node.id, role: node.certRole, clusterId: state.clusterId, serial, notBefore, notAfter },
    };
  }

  /** The chain check, from the connection's cache when the roots have not changed and the certificate is in its validity. */
  private verify(
    peer: PeerCert<Verified>,
    trust: ClusterState['trust'],
    now: number,
    graceMs: number | undefined,
  ): { identity: PeerIdentity; issuer: X509Certificate; fingerprint: string } {
    // What this manager issued on the connection carries its check while the roots are those it was signed under.
    const known = peer instanceof IssuedPeer && peer.known?.trust === trust ? peer.known : undefined;
    const cached = known ?? this.verified.get(peer instanceof IssuedPeer ? peer.x509 : peer);
    // Within its validity the grace changes nothing: a renewal's request (which allows one) is answered from the cache too.
    if (cached !== undefined && cached.trust === trust && now >= cached.identity.notBefore && now <= cached.identity.notAfter) {
      if (trust.roots.every((root) => root.until === undefined || root.until > now || root.cert !== cached.issuer)) return cached;
    }
    const x509 = peer instanceof IssuedPeer ? peer.x509 : peer;
    // The admin CA is ours as the roots are (its key sealed in the store): an API user's certificate from it needs no chain presented.
    const roots = [
      ...trust.roots.filter((root) => root.until === undefined || root.until > now).map((root) => root.cert),
      ...(trust.admin === undefined ? [] : [trust.admin]),
    ];
    const result = verifyPeerCertificate({ cert: x509, roots, now, ...(graceMs === undefined ? {} : { graceMs }) });
    // The admin CA issues API users only: anything else from it is forged with its key.
    if (result.issuer === trust.admin && result.identity.role !== 'admin')
      throw new MusterError('CERT_UNTRUSTED', 'the admin CA issues API-user certificates only');
    const verified = { trust, ...result, fingerprint: fingerprintOf(x509) };
    if (graceMs === undefined) this.verified.set(x509, verified);
    return verified;
  }

  /**
   * 401 when there is no certificate or it is not one of ours (wrong root,
   * expired, another cluster); 403 when it is ours but its role is not
   * allowed, or its node has been removed or demoted, or the user revoked.
   */
  async authorize(cert: PeerCert<Verified> | undefined, allowed: readonly CertRole[], options: AuthOptions = {}): Promise<Caller> {
    if (cert === undefined) throw new MusterError('AUTH_REQUIRED');
    const { state, store, clock } = this.deps;
    const now = clock.now();
    const grace = state.cluster.renewGraceMs ?? DEFAULT_RENEW_GRACE_MS;
    // During a root rotation both roots are trusted, and a root it replaced until every certificate it issued has expired.
    const trust = state.trust; // one snapshot: the roots checked and the signing root come from the same CA record
    const { identity, issuer, fingerprint } = this.verify(cert, trust, now, options.expiredWithinGrace === true ? grace : undefined);
    const expired = now > identity.notAfter;
    if (identity.clusterId !== state.clusterId || identity.role === undefined) {
      throw new MusterError('CERT_UNTRUSTED', 'the certificate does not belong to this cluster');
    }
    const role = identity.role;
    let node: NodeRecord | undefined;
    if (isNodeRole(role)) {
      node = (await store.get(KEYS.nodes.ref(identity.nodeId)))?.value;
      if (node === undefined) throw new MusterError('AUTH_FORBIDDEN', 'this certificate names no node of this cluster');
      if (node.removed) throw new MusterError('NODE_REMOVED');
      // Chaining to the root is not enough: a certificate the root's key signed outside muster (an external CA
      // that signs for anyone, a corporate root) must not act as a node. Only the serial the node record holds
      // passes, or the one it replaced, which the node keeps using until its renewal has landed.
      const before = node.superseded?.at(-1);
      if (identity.serial !== node.certSerial && identity.serial !== before?.serial) {
        throw new MusterError(
          'CERT_UNTRUSTED',
          'this certificate is not one the cluster recorded for this node (neither its current certificate nor the one before it)',
        );
      }
      // The same serial is not the same certificate: whoever holds a root's key (a removed manager, the root a
      // rotation replaced) can sign another with it. The record pins the certificate itself (records from before the pin: the serial).
      const pinned = identity.serial === node.certSerial ? node.certSha256 : before?.sha256;
      if (pinned !== undefined && pinned !== fingerprint) {
        throw new MusterError('CERT_UNTRUSTED', 'this certificate has the serial of one the cluster recorded for this node, but is not that certificate');
      }
    }
    if (!allowed.includes(role)) throw new MusterError('AUTH_FORBIDDEN', `a ${role} certificate may not call this route`);
    // An API user is only as good as the record of its certificate: one muster
    // did not issue, or an admin revoked, is refused.
    if (role === 'admin') {
      const record = (await store.get(KEYS.certificates.ref(identity.serial)))?.value;
      if (record === undefined || record.role !== 'admin' || record.subject !== identity.nodeId)
        throw new MusterError('AUTH_FORBIDDEN', 'this API-user certificate is not one this cluster issued');
      if (record.revokedAt !== undefined) throw new MusterError('CERT_REVOKED');
    }
    // A demoted manager keeps its OU until it renews; the store has the last word.
    if (role === 'manager' && node?.role !== 'manager' && !allowed.includes('worker')) {
      throw new MusterError('AUTH_FORBIDDEN', 'this node is no longer a manager');
    }
    if (expired) {
      // Only the newest certificate of a node that is still in the cluster can be renewed after it expired.
      if (node === undefined || node.certSerial !== identity.serial)
        throw new MusterError('CERT_EXPIRED', 'the certificate has expired and is not the newest one issued to this node');
    }
    // The roots checked are the very objects of that snapshot, so the one that verified the certificate says whether it is the signing root.
    return { ...identity, role, node, expired, fromSigningRoot: issuer === trust.signing.cert };
  }
}
