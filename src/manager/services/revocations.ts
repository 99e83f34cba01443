/**
 * Revocation: the store's denylist (`revoked/<serial>`) and the CRL signed
 * from it. A revocation adds its entries and bumps the CRL number in one
 * transaction, so every manager signs the same list for the same number.
 * An entry is deleted once its certificate has expired (the number bumps
 * again): the list never holds more than the certificates still valid,
 * where Swarm's removed-node list grows for ever (moby/moby#36792).
 *
 * Every manager signs the CRL itself, for the current number, and keeps it
 * until the number changes. A CRL is valid for CRL_LIFETIME_MS; the first
 * fetch after CRL_REFRESH_AFTER_MS has passed issues the next one. Each root
 * the cluster trusts and holds the key of signs its own CRL, all of one
 * number and one list (serials are random, so a serial names one
 * certificate whatever its root): during a root rotation the old and the
 * new root, and after it the old one until its certificates expire. A
 * verifier (nginx's ssl_crl) looks for the CRL of each certificate's
 * issuer. With an external
 * CA there is no CRL: signing one would mean sending the root key to the CA
 * (cfssl's gencrl takes the key in the request), which is what an external
 * CA exists to avoid. Its revocation is the external CA's own.
 */
import type { Clock } from '../../core/clock.js';
import { MusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { CertRole } from '../../core/roles.js';
import type { CrlEntry } from '../../pki/crl.js';
import { KEYS, type Tx, transact, type ClusterStore } from '../../store/cluster-store.js';
import { SCHEMA_VERSION, type CrlRecord, type NodeRecord, type RevocationReason, type RevokedRecord } from '../../store/records.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { Signer } from '../state/signing.js';

/** How long a CRL is valid (its nextUpdate is thisUpdate plus this). */
export const CRL_LIFETIME_MS = 60 * 60_000;
/**
 * A CRL older than this is replaced at the next fetch: a node whose clock is
 * up to CRL_LIFETIME_MS - CRL_REFRESH_AFTER_MS ahead still finds it fresh.
 */
export const CRL_REFRESH_AFTER_MS = 10 * 60_000;
/** Entries deleted per transaction (etcd allows 128 operations in one). */
const DELETES_PER_TXN = 100;
/**
 * Earlier certificates a node record keeps (its `superseded` list), newest
 * last: a demotion or `node rm --revoke-all` lists them all in its one
 * transaction, so however often a node renews within a certificate lifetime
 * that transaction stays far below etcd's 128 operations. Older ones go on
 * the denylist as they drop out (see {@link Revocations.shed}).
 */
export const MAX_SUPERSEDED = 8;
/** Entries one transaction moves from an over-long superseded list to the denylist (a record from before the bound may hold hundreds). */
const SHED_PER_TXN = 16;

/** A node record's list of earlier certificates. */
type Superseded = NonNullable<NodeRecord['superseded']>;

/** A certificate to put on the denylist. */
export interface Revoke {
  serial: string;
  subject: string;
  role: CertRole;
  notAfter: number;
}

/** A signed CRL and what it was signed from. */
export interface SignedCrl {
  /** The key identifier (hex) of the root that signed it: it is served at /v1/crl/<issuer>. */
  issuer: string;
  der: Buffer;
  number: number;
  thisUpdate: number;
  nextUpdate: number;
  serials: ReadonlySet<string>;
}

/** The certificates of a node that are still valid: its current one and those it superseded. */
export function validCertificatesOf(node: NodeRecord, now: number): Revoke[] {
  return [currentCertificate(node), ...(node.superseded ?? [])].filter((c) => c.notAfter > now).map((c) => ({ ...c, subject: node.id }));
}

/** The node's superseded list once a new certificate replaces its current one: that one added, expired ones dropped. */
export function supersede(node: NodeRecord, now: number): NodeRecord['superseded'] {
  return [...(node.superseded ?? []), currentCertificate(node)].filter((c) => c.notAfter > now);
}

function currentCertificate(node: NodeRecord): NonNullable<NodeRecord['superseded']>[number] {
  return { serial: node.certSerial, notAfter: node.certNotAfter, role: node.certRole, ...(node.certSha256 === undefined ? {} : { sha256: node.certSha256 }) };
}

/** Whether the signer's issuer with this key identifier still counts at `now` (a replaced root's certificates have not all expired). */
function live(signer: Signer, keyIdHex: string, now: number): boolean {
  const until = signer.crlIssuers.find((issuer) => issuer.keyIdHex === keyIdHex)?.until;
  return until === undefined || until > now;
}

/** The denylist entry of `cert`, revoked at `now` for `reason`. */
export function revokedRecord(cert: Revoke, now: number, reason: RevocationReason): RevokedRecord {
  return { schema: SCHEMA_VERSION, serial: cert.serial, subject: cert.subject, role: cert.role, notAfter: cert.notAfter, revokedAt: now, reason };
}

/** The denylist and the CRL. */
export class Revocations {
  /** The CRLs signed last, and the signer that signed them (a new CA record brings new issuers). */
  private signed: { signer: Signer; crls: SignedCrl[] } | undefined;
  private pending: Promise<SignedCrl[]> | undefined;

  constructor(private readonly deps: { store: ClusterStore; state: ClusterState; clock: Clock; logger: Logger }) {}

  /**
   * Puts `certs` on the denylist within `tx` and moves the CRL on; expired
   * ones, and ones already listed, are skipped (read in `tx`, so a listing
   * committed meanwhile reruns it): written again they would only make the
   * transaction larger, round after round of demotions. A key compromise
   * still overrides an earlier reason. Returns the serials it listed.
   */
  async revoke(tx: Tx, certs: readonly Revoke[], reason: RevocationReason): Promise<string[]> {
    const now = this.deps.clock.now();
    const listed: string[] = [];
    for (const cert of certs) {
      if (cert.notAfter <= now) continue;
      const ref = KEYS.revoked.ref(cert.serial);
      const entry = tx.written(ref) ?? (await tx.get(ref));
      if (entry !== undefined && (reason !== 'keyCompromise' || entry.reason === 'keyCompromise')) continue;
      tx.put(ref, entry === undefined ? revokedRecord(cert, now, reason) : { ...entry, reason });
      listed.push(cert.serial);
    }
    if (listed.length === 0) return [];
    await this.bump(tx, now, true);
    return listed;
  }

  /**
   * A node's superseded list bounded within `tx`: beyond the newest
   * MAX_SUPERSEDED, the oldest (SHED_PER_TXN at most) go on the denylist as
   * superseded and leave the list. The authoriser already refuses them (only
   * the current certificate and the one before it pass), but a manager
   * certificate among them could still serve TLS: once no longer recorded
   * for a demotion to list, the CRL must refuse it now. Returns the list to keep.
   */
  async shed(tx: Tx, nodeId: string, superseded: Superseded): Promise<Superseded> {
    const over = Math.min(superseded.length - MAX_SUPERSEDED, SHED_PER_TXN);
    if (over <= 0) return superseded;
    const dropped = superseded.slice(0, over).map((c) => ({ serial: c.serial, subject: nodeId, role: c.role, notAfter: c.notAfter }));
    await this.revoke(tx, dropped, 'superseded');
    return superseded.slice(over);
  }

  /**
   * Bounds a node record's superseded list (see {@link shed}) in
   * transactions of its own, before a demotion or removal lists what is
   * left: a record written before the bound may hold hundreds.
   */
  async boundSuperseded(node: Pick<NodeRecord, 'id' | 'superseded'>): Promise<void> {
    // The usual record is within the bound already: no transaction.
    if ((node.superseded?.length ?? 0) <= MAX_SUPERSEDED) return;
    const nodeId = node.id;
    for (let done = false; !done; ) {
      done = await transact(this.deps.store, async (tx) => {
        const ref = KEYS.nodes.ref(nodeId);
        const node = await tx.get(ref);
        if (node === undefined || node.removed || (node.superseded?.length ?? 0) <= MAX_SUPERSEDED) return true;
        tx.put(ref, { ...node, superseded: await this.shed(tx, nodeId, node.superseded ?? []) });
        return false;
      });
    }
  }

  /**
   * The number of the last change to the list: a node holding a CRL of this
   * number or newer knows every revocation. Undefined when the cluster
   * publishes no CRL.
   */
  get number(): number | undefined {
    if (this.deps.state.signer.crlIssuers.length === 0) return undefined;
    return this.deps.state.crl?.changedAt ?? 0;
  }

  /** The current root's CRL (what nodes check), signed by this manager; CRL_UNAVAILABLE with an external CA. */
  async crl(): Promise<SignedCrl> {
    return (await this.crls())[0]!;
  }

  /** The CRL of each root the cluster trusts and holds the key of, the current root's first; CRL_UNAVAILABLE with an external CA. */
  async crls(): Promise<SignedCrl[]> {
    const signer = this.deps.state.signer;
    if (signer.crlIssuers.length === 0) throw new MusterError('CRL_UNAVAILABLE');
    const now = this.deps.clock.now();
    const record = this.deps.state.crl;
    const signed = this.signed;
    const fresh = record !== undefined && now - record.thisUpdate < CRL_REFRESH_AFTER_MS;
    if (
      fresh &&
      signed !== undefined &&
      signed.signer === signer &&
      signed.crls[0]?.number === record.number &&
      signed.crls.every((crl) => live(signer, crl.issuer, now))
    )
      return signed.crls;
    this.pending ??= this.build(fresh ? record : undefined).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /** The CRL of the root with this key identifier (hex); CRL_ISSUER_UNKNOWN when no trusted root of that key signs one here. */
  async crlOf(issuer: string): Promise<SignedCrl> {
    const found = (await this.crls()).find((crl) => crl.issuer === issuer.toLowerCase());
    if (found === undefined) throw new MusterError('CRL_ISSUER_UNKNOWN', `no root of this cluster with key identifier ${issuer} signs a CRL here`);
    return found;
  }

  /**
   * Deletes the entries of certificates that have expired and moves the CRL
   * on if it changed or is due; returns how many entries went. The janitor
   * calls this on the leader; a CRL fetch does the same when it is due.
   */
  async prune(): Promise<number> {
    const { store, clock } = this.deps;
    const now = clock.now();
    const expired = (await store.list(KEYS.revoked)).filter((e) => e.value.notAfter <= now);
    let deleted = 0;
    do {
      const batch = expired.splice(0, DELETES_PER_TXN);
      const { record, removed } = await transact(store, async (tx) => {
        // Read again inside the transaction: another manager's prune (or the janitor's) may have taken some already.
        let removed = 0;
        for (const entry of batch) {
          const ref = KEYS.revoked.ref(entry.id);
          const current = await tx.get(ref);
          if (current === undefined || current.notAfter > now) continue;
          tx.delete(ref);
          removed += 1;
        }
        const current = await tx.get(KEYS.crl);
        if (removed === 0 && current !== undefined && now - current.thisUpdate < CRL_REFRESH_AFTER_MS) return { record: current, removed };
        return { record: await this.bump(tx, now, removed > 0), removed };
      });
      deleted += removed;
      await this.deps.state.refresh();
      if (this.deps.state.crl === undefined || this.deps.state.crl.number < record.number)
        throw new MusterError('STORE_UNAVAILABLE', 'the CRL record did not read back');
    } while (expired.length > 0);
    return deleted;
  }

  /** Signs the CRLs for the stored record (after a prune when it is due), one per issuer still trusted. */
  private async build(due: CrlRecord | undefined): Promise<SignedCrl[]> {
    const { store, state, clock } = this.deps;
    if (due === undefined) await this.prune();
    const signer = state.signer;
    const record = state.crl ?? { number: 0, thisUpdate: clock.now(), changedAt: 0 };
    const listed = (await store.list(KEYS.revoked)).map((e) => e.value);
    const entries: CrlEntry[] = listed.map((r) => ({ serial: r.serial, revokedAt: r.revokedAt, reason: r.reason }));
    const nextUpdate = record.thisUpdate + CRL_LIFETIME_MS;
    const serials = new Set(listed.map((r) => r.serial));
    const now = clock.now();
    const crls = signer.crlIssuers
      .filter((issuer) => live(signer, issuer.keyIdHex, now))
      .map(
        (issuer): SignedCrl => ({
          issuer: issuer.keyIdHex,
          der: issuer.sign({ number: record.number, thisUpdate: record.thisUpdate, nextUpdate, entries }),
          number: record.number,
          thisUpdate: record.thisUpdate,
          nextUpdate,
          serials,
        }),
      );
    // A store change may have raced the listing: keep it only if the number is still the one signed.
    if (state.crl === undefined || state.crl.number === record.number) this.signed = { signer, crls };
    return crls;
  }

  /** Moves the CRL on within `tx` (a completed root rotation: the new root signs from now on, and nodes fetch it again). */
  async reissue(tx: Tx): Promise<void> {
    await this.bump(tx, this.deps.clock.now(), true);
  }

  /** The next CRL record, written within `tx`; `changed` when the list itself changes. */
  private async bump(tx: Tx, now: number, changed: boolean): Promise<CrlRecord> {
    const current = await tx.get(KEYS.crl);
    const number = (current?.number ?? 0) + 1;
    const next: CrlRecord = { schema: SCHEMA_VERSION, number, thisUpdate: now, changedAt: changed ? number : (current?.changedAt ?? 0) };
    tx.put(KEYS.crl, next);
    return next;
  }
}
