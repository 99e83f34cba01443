/**
 * Root CA rotation (`muster ca --rotate`, as SwarmKit's): the new root is
 * cross-signed by the current one and every certificate is issued under the
 * new key with that intermediate, so nodes still trusting only the old root
 * accept managers and peers on the new chain. Nodes are told to renew at
 * their next poll and get the new root in their trust bundle (old and new
 * while the rotation runs). When every node that is up holds a certificate
 * under the new root, the leader completes the rotation in one transaction:
 * the new root becomes the root, the old one is dropped from the bundle and
 * the chain, and the join tokens get the new root's digest (their secrets
 * stay). The old root is kept, with the cross-signed certificate, until every
 * certificate it issued has expired: a node that was down throughout learns
 * the new root from it and renews with its old certificate, managers serve
 * their certificates with the cross-signed copy so that clients holding only
 * the old root (API users) still verify them, and the old key signs the old
 * root's CRL.
 */
import type { Clock, TimerHandle } from '../../core/clock.js';
import { iso, parseCertExpiry } from '../../core/duration.js';
import { DEFAULT_RENEW_GRACE_MS } from '../../api/routes.js';
import { MusterError, isMusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Random } from '../../core/random.js';
import {
  canonicalRootPem,
  createRootCa,
  crossSignRoot,
  importRootCa,
  importRootCertificate,
  loadSigningCa,
  rootDigest,
  rootIdentity,
  type RootIdentity,
} from '../../pki/ca.js';
import { seal } from '../../pki/seal.js';
import { formatJoinToken, parseJoinToken } from '../../token/join-token.js';
import { KEYS, pages, transact, type ClusterStore } from '../../store/cluster-store.js';
import type { CaRecord, ClusterRecord } from '../../store/records.js';
import type { RotationRequest, RotationStatus } from '../../api/schemas.js';
import type { Audit } from './audit.js';
import { who, type Caller } from '../state/caller.js';
import type { ClusterState } from '../state/cluster-state.js';
import { nodeStatus } from './inventory.js';
import type { Membership } from '../state/membership.js';
import type { Revocations } from './revocations.js';
import { SEAL_CONTEXT, currentSigningCa, sealExternalCas } from '../state/signer.js';
import { openToken, storeTokens } from '../state/stored-tokens.js';
import { noteRekey, rekeyIn, type DataKeyRing } from '../state/data-key.js';
import { crossCertifyAdminCa } from './admin-ca.js';

/** How often the leader looks at a rotation's progress (each look reads every node record). */
export const ROTATION_CHECK_MS = 3_000;
/** How long a count serves status requests. */
const COUNT_TTL_MS = 2_000;
/** Node records read per store call when counting. */
const CHUNK = 1_000;

/** What the rotation works with. */
export interface RotationDeps {
  state: ClusterState;
  store: ClusterStore;
  membership: Pick<Membership, 'isLeader'>;
  revocations: Revocations;
  clock: Clock;
  random: Random;
  logger: Logger;
  audit: Audit;
  /** The cluster data key; a rotation replaces it (see data-key.ts). */
  dataKeys: DataKeyRing;
  /** When a silent node counts as down (and is not waited for). */
  downAfterMs: number;
}

/** How long a root a rotation replaced stays trusted: until the certificates it issued have expired, and the renewal grace after. */
function keptFor(cluster: ClusterRecord): number {
  return cluster.certExpiryMs + (cluster.renewGraceMs ?? DEFAULT_RENEW_GRACE_MS);
}

/** The token with the digest part of `rootPem`, the secret kept. */
function redigest(token: string, rootPem: string): string {
  return formatJoinToken({ ...parseJoinToken(token), digest: rootDigest(rootPem) });
}

/** Starts, follows and completes root rotations. */
export class RootRotation {
  private timer: TimerHandle | undefined;
  private checking: Promise<void> | undefined;
  private stopped = false;
  private counted: { at: number; digest: string; value: Promise<{ total: number; rotated: number }> } | undefined;

  constructor(private readonly deps: RotationDeps) {}

  /**
   * Starts a rotation to a new founded root, or to the given one (with its
   * key). A rotation under way gets the new target: it is cross-signed by the
   * current root again, and nodes renew under it.
   */
  async start(request: RotationRequest, caller?: Caller): Promise<RotationStatus> {
    const { store, state, clock, random, dataKeys, audit, logger } = this.deps;
    const certExpiryMs = request.certExpiry === undefined ? undefined : parseCertExpiry(request.certExpiry);
    const external = request.externalCAs;
    if (
      external !== undefined
        ? request.caCertPem === undefined || request.caKeyPem !== undefined
        : (request.caCertPem === undefined) !== (request.caKeyPem === undefined)
    ) {
      throw new MusterError('BODY_INVALID', 'a new root needs its certificate and either its key or the external CAs that hold it');
    }
    let own = ''; // SHA-256 (hex) of this call's target
    try {
      const target = this.newRoot(request);
      own = rootDigest(target.certPem).toString('hex');
      const rekeyed = await transact(store, async (tx) => {
        const ca = await tx.get(KEYS.ca);
        if (ca === undefined) throw new MusterError('STATE_CORRUPT', 'the store holds no CA');
        const dataKey = await dataKeys.keyFor(tx);
        const current = currentSigningCa(ca, dataKey);
        if (current === undefined) {
          throw new MusterError('BODY_INVALID', "this cluster's root key is held by an external CA: cross-signing a new root needs it", {
            hint: 'cross-sign the new root with the external CA, then found a cluster on it; or rotate a cluster whose managers hold the root key',
          });
        }
        if (target.certPem === ca.rootPem) throw new MusterError('BODY_INVALID', 'the new root is the current root');
        const rotation: NonNullable<CaRecord['rotation']> = {
          rootPem: target.certPem,
          ...(target.keyPem === undefined ? {} : { key: seal(dataKey, target.keyPem, SEAL_CONTEXT.caKey) }),
          ...(external === undefined ? {} : { external: sealExternalCas(dataKey, external) }),
          crossSignedPem: crossSignRoot({ next: target.identity, by: current, random }),
          // The admin CA stays (its key, and so the anchor services trust); the new root certifies it too (admin-ca.ts).
          ...(ca.admin === undefined || target.keyPem === undefined
            ? {}
            : { adminCrossSignedPem: crossCertifyAdminCa(ca.admin, loadSigningCa({ certPem: target.certPem, keyPem: target.keyPem }), random) }),
          startedAt: clock.now(),
        };
        const cluster = await tx.get(KEYS.cluster);
        if (cluster === undefined) throw new MusterError('STATE_CORRUPT', 'the store holds no cluster');
        // A target this rotation replaces stays trusted (with its cross-signed copy) while certificates it issued are valid:
        // nodes that renewed under it renew again under the new target.
        const now = clock.now();
        const replaced =
          ca.rotation === undefined
            ? []
            : [
                {
                  rootPem: ca.rotation.rootPem,
                  ...(ca.rotation.key === undefined ? {} : { key: ca.rotation.key }),
                  crossSignedPem: ca.rotation.crossSignedPem,
                  until: now + keptFor(cluster),
                },
              ];
        const previous = [...replaced, ...(ca.previous ?? []).filter((p) => p.until > now)];
        tx.put(KEYS.ca, { ...ca, rotation, ...(previous.length === 0 ? {} : { previous }) });
        if (certExpiryMs !== undefined) tx.put(KEYS.cluster, { ...cluster, certExpiryMs });
        // The same transaction replaces the data key: the new root's key is never sealed under a key a removed manager may hold.
        return rekeyIn(tx, dataKeys, { now });
      });
      dataKeys.adopt(rekeyed);
      noteRekey(logger, rekeyed);
    } catch (error) {
      audit.record({ action: 'ca.rotate', caller, result: error });
      throw error;
    }
    await state.refresh();
    logger.info({ target: state.trust.signing.digestHex, ...who(caller) }, 'root CA rotation started');
    // This call's own target, and whether it still stands: a rotation started at the same time may have replaced it since the commit.
    audit.record({
      action: 'ca.rotate',
      caller,
      result: state.trust.signing.digestHex === own ? 'ok' : new MusterError('CA_ROTATION_REPLACED'),
      details: { target: own, certExpiry: request.certExpiry },
    });
    this.arm();
    return this.status();
  }

  /** The rotation's new root: given with the external CAs that hold its key, given with its key, or founded here. */
  private newRoot(request: RotationRequest): { certPem: string; identity: RootIdentity; keyPem?: string } {
    const { state, clock, random } = this.deps;
    if (request.caCertPem !== undefined && request.externalCAs !== undefined) {
      const certPem = canonicalRootPem(request.caCertPem);
      importRootCertificate(certPem, clock);
      return { certPem, identity: rootIdentity(certPem) };
    }
    const given =
      request.caCertPem !== undefined && request.caKeyPem !== undefined
        ? { certPem: canonicalRootPem(request.caCertPem), keyPem: request.caKeyPem }
        : undefined;
    const material = given ?? createRootCa({ clusterId: state.clusterId, clock, random });
    const ca = given === undefined ? loadSigningCa(material) : importRootCa(material, clock);
    return { certPem: ca.certPem, identity: ca, keyPem: material.keyPem };
  }

  /** Where a rotation stands: nodes up and counted, and how many hold a certificate under the new root. */
  async status(): Promise<RotationStatus> {
    const { state } = this.deps;
    const rotation = state.ca.rotation;
    const digest = state.trust.signing.digestHex;
    const now = this.deps.clock.now();
    if (this.counted === undefined || this.counted.digest !== digest || now - this.counted.at > COUNT_TTL_MS) {
      const value = this.count(digest);
      value.catch(() => (this.counted = undefined));
      this.counted = { at: now, digest, value };
    }
    const { total, rotated } = await this.counted.value;
    const kept = (state.ca.previous ?? []).map((p) => p.until).filter((until) => until > now);
    return {
      rotating: rotation !== undefined,
      rootDigest: state.root.digestHex,
      ...(rotation === undefined ? {} : { targetDigest: state.trust.signing.digestHex, startedAt: iso(rotation.startedAt) }),
      nodes: { total, rotated },
      ...(rotation !== undefined || kept.length === 0 ? {} : { oldRootUntil: iso(Math.max(...kept)) }),
    };
  }

  /** Counts the nodes that are not removed or down, and those of them whose certificate the signing root issued. */
  private async count(signingDigest: string): Promise<{ total: number; rotated: number }> {
    const now = this.deps.clock.now();
    let total = 0;
    let rotated = 0;
    for await (const chunk of pages(this.deps.store, KEYS.nodes, { limit: CHUNK })) {
      for (const { value: node } of chunk) {
        if (nodeStatus(node, now, this.deps.downAfterMs) !== 'ready') continue;
        total += 1;
        if (node.certRoot === signingDigest) rotated += 1;
      }
    }
    return { total, rotated };
  }

  /**
   * Completes the rotation when every node that is up has rotated (leader
   * only): one transaction swaps the root, keeps the old one for stragglers,
   * re-digests the tokens and moves the CRL on (the new root signs it now).
   * Returns true when it completed one.
   */
  async reconcile(): Promise<boolean> {
    const { state, store, clock, logger, revocations, audit, dataKeys } = this.deps;
    const rotation = state.ca.rotation;
    if (rotation === undefined) return false;
    const { total, rotated } = await this.count(rootDigest(rotation.rootPem).toString('hex'));
    if (rotated < total) return false;
    const now = clock.now();
    const keepUntil = now + keptFor(state.cluster);
    const done = await transact(store, async (tx) => {
      const ca = await tx.get(KEYS.ca);
      const tokens = await tx.get(KEYS.tokens);
      if (ca === undefined || tokens === undefined) throw new MusterError('STATE_CORRUPT', 'the store holds no CA');
      // The record the count was made for: a new target meanwhile starts the count again.
      if (ca.rotation === undefined || ca.rotation.rootPem !== rotation.rootPem) return false;
      const dataKey = await dataKeys.keyFor(tx);
      const next: CaRecord = {
        schema: ca.schema,
        rootPem: ca.rotation.rootPem,
        ...(ca.rotation.key === undefined ? {} : { key: ca.rotation.key }),
        ...(ca.rotation.external === undefined ? {} : { external: ca.rotation.external }),
        // The admin CA, now under the new root (kept as it was when an external CA holds the new root's key: it still vouches for the API users it issued).
        ...(ca.admin === undefined
          ? {}
          : { admin: ca.rotation.adminCrossSignedPem === undefined ? ca.admin : { ...ca.admin, crossSignedPem: ca.rotation.adminCrossSignedPem } }),
        // The old key stays (sealed) only to sign the old root's CRL while its certificates are valid; it signs no certificate.
        previous: [
          { rootPem: ca.rootPem, ...(ca.key === undefined ? {} : { key: ca.key }), crossSignedPem: ca.rotation.crossSignedPem, until: keepUntil },
          ...(ca.previous ?? []).filter((p) => p.until > now),
        ],
      };
      tx.put(KEYS.ca, next);
      tx.put(KEYS.tokens, {
        ...tokens,
        ...storeTokens(dataKey, {
          worker: redigest(openToken(dataKey, 'worker', tokens.worker), next.rootPem),
          manager: redigest(openToken(dataKey, 'manager', tokens.manager), next.rootPem),
        }),
      });
      await revocations.reissue(tx);
      return true;
    });
    if (!done) return false;
    await state.refresh();
    logger.info({ root: state.root.digestHex, nodes: total }, 'root CA rotation complete');
    audit.record({ action: 'ca.rotate.complete', result: 'ok', details: { root: state.root.digestHex, nodes: total } });
    return true;
  }

  /** Follows a rotation under way (after a restart, or one another manager started). Idempotent. */
  run(): void {
    this.stopped = false;
    this.arm();
  }

  /** Stops following, and waits for a check under way. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.checking;
  }

  private arm(): void {
    if (this.stopped || this.timer !== undefined) return;
    this.timer = this.deps.clock.setTimer(ROTATION_CHECK_MS, () => {
      this.timer = undefined;
      this.checking = this.tick().finally(() => {
        this.checking = undefined;
        this.arm();
      });
    });
  }

  private async tick(): Promise<void> {
    try {
      if (this.deps.state.ca.rotation === undefined || !(await this.deps.membership.isLeader())) return;
      await this.reconcile();
    } catch (error) {
      this.deps.logger.warn({ code: isMusterError(error) ? error.code : 'INTERNAL' }, 'the rotation check failed; the next one tries again');
    }
  }
}
