/**
 * Cluster settings and join tokens (SwarmKit's controlapi cluster.go): the
 * cluster view, `update` (certificate expiry, external CAs) and token
 * rotation. Each change reads the record from the store and commits only if
 * nobody changed it meanwhile, so two concurrent rotations both take effect.
 */
import type { Clock } from '../../core/clock.js';
import { formatDuration, iso, parseCertExpiry } from '../../core/duration.js';
import { DEFAULT_RENEW_GRACE_MS } from '../../api/routes.js';
import { MusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Random } from '../../core/random.js';
import type { NodeRole } from '../../core/roles.js';
import { rootDigest } from '../../pki/ca.js';
import { generateJoinToken } from '../../token/join-token.js';
import { KEYS, transact, type ClusterStore } from '../../store/cluster-store.js';
import type { ClusterPatch, ClusterView, JoinTokens } from '../../api/schemas.js';
import type { Audit } from './audit.js';
import { who, type Caller } from '../state/caller.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { Membership } from '../state/membership.js';
import { sealExternalCas } from '../state/signer.js';
import { openToken, storeToken } from '../state/stored-tokens.js';
import type { DataKeyRing } from '../state/data-key.js';

/** What the settings work with. */
export interface SettingsDeps {
  state: ClusterState;
  store: ClusterStore;
  membership: Membership;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** The cluster data key (it changes when the cluster re-keys). */
  dataKeys: DataKeyRing;
  /** This manager's node ID (its own certificate tells what an external CA issues). */
  nodeId: string;
  audit: Audit;
  /** Whether autolock is on (the autolock service knows). */
  autolockEnabled: () => boolean;
}

/** Cluster settings and tokens. */
export class Settings {
  constructor(private readonly deps: SettingsDeps) {}

  /** Cluster settings and CA facts; tokens only when asked. */
  async clusterView(includeTokens: boolean, caller?: Caller): Promise<ClusterView> {
    const { state } = this.deps;
    if (includeTokens && caller !== undefined) this.deps.audit.record({ action: 'join-token.show', caller, result: 'ok' });
    const { tokens, cluster, ca } = state;
    const token = (role: NodeRole): { rotatedAt: string; token?: string } =>
      includeTokens
        ? { rotatedAt: iso(tokens.rotatedAt[role]), token: this.deps.dataKeys.withKey((key) => openToken(key, role, tokens[role])) }
        : { rotatedAt: iso(tokens.rotatedAt[role]) };
    const externalLifetime = state.signer.external ? await this.externalLifetime() : undefined;
    return {
      clusterId: cluster.clusterId,
      createdAt: iso(cluster.createdAt),
      certExpiry: formatDuration(cluster.certExpiryMs),
      certExpiryMs: cluster.certExpiryMs,
      renewGrace: formatDuration(cluster.renewGraceMs ?? DEFAULT_RENEW_GRACE_MS),
      advertiseAddr: this.deps.membership.address,
      store: this.deps.store.description,
      ca: {
        digest: state.root.digestHex,
        subject: state.root.cert.subject.split('\n').join(', '),
        notAfter: iso(Date.parse(state.root.cert.validTo)),
        external: state.signer.external,
        externalUrls: (ca.external ?? []).map((external) => external.url),
        ...(externalLifetime === undefined ? {} : { externalLifetime }),
      },
      joinTokens: { worker: token('worker'), manager: token('manager') },
      autolock: this.deps.autolockEnabled(),
    };
  }

  /** How long the external CA's last certificate for this manager lasts: what its profile issues, whatever --cert-expiry says. */
  private async externalLifetime(): Promise<string | undefined> {
    const { store, nodeId } = this.deps;
    const node = (await store.get(KEYS.nodes.ref(nodeId)))?.value;
    const issued = node === undefined ? undefined : (await store.get(KEYS.certificates.ref(node.certSerial)))?.value;
    // A CA profile's expiry counts from NotBefore (cfssl backdates it a few minutes).
    return issued === undefined ? undefined : formatDuration(Math.round((issued.notAfter - issued.notBefore) / 60_000) * 60_000);
  }

  /** Changes the certificate expiry (>= 5m; it applies from the next signing) and/or the external CA list. */
  async updateCluster(patch: ClusterPatch, caller?: Caller): Promise<ClusterView> {
    const { state, store, logger, dataKeys } = this.deps;
    if (patch.certExpiry === undefined && patch.externalCAs === undefined)
      throw new MusterError('BODY_INVALID', 'nothing to update: send certExpiry, externalCAs and/or autolock');
    const certExpiryMs = patch.certExpiry === undefined ? undefined : parseCertExpiry(patch.certExpiry);
    const externalCAs = patch.externalCAs;
    if (externalCAs !== undefined && externalCAs.length === 0) throw new MusterError('BODY_INVALID', 'at least one external CA is needed');
    await transact(store, async (tx) => {
      if (externalCAs !== undefined) {
        const ca = await tx.get(KEYS.ca);
        if (ca === undefined) throw new MusterError('STATE_CORRUPT', 'the store holds no CA');
        if (ca.external === undefined) {
          throw new MusterError('BODY_INVALID', 'this cluster signs with its own root key; external CAs apply only to a cluster founded with --external-ca');
        }
        tx.put(KEYS.ca, { ...ca, external: sealExternalCas(await dataKeys.keyFor(tx), externalCAs) });
      }
      if (certExpiryMs !== undefined) {
        const cluster = await tx.get(KEYS.cluster);
        if (cluster === undefined) throw new MusterError('STATE_CORRUPT', 'the store holds no cluster');
        tx.put(KEYS.cluster, { ...cluster, certExpiryMs });
      }
    }).catch((error: unknown) => {
      this.deps.audit.record({ action: 'cluster.update', caller, result: error });
      throw error;
    });
    await state.refresh();
    this.deps.audit.record({
      action: 'cluster.update',
      caller,
      result: 'ok',
      details: { certExpiry: patch.certExpiry, externalCAs: externalCAs?.map((ca) => ca.url) },
    });
    if (externalCAs !== undefined) logger.info({ urls: externalCAs.map((ca) => ca.url), ...who(caller) }, 'external CAs changed');
    if (certExpiryMs !== undefined) logger.info({ certExpiry: formatDuration(certExpiryMs), ...who(caller) }, 'certificate expiry changed');
    return await this.clusterView(false);
  }

  /** The current join tokens and the address to join (this manager's); who asked is audited. */
  joinTokens(caller?: Caller): JoinTokens {
    const { tokens } = this.deps.state;
    if (caller !== undefined) this.deps.audit.record({ action: 'join-token.show', caller, result: 'ok' });
    return this.deps.dataKeys.withKey((key) => ({
      worker: openToken(key, 'worker', tokens.worker),
      manager: openToken(key, 'manager', tokens.manager),
      managerAddr: this.deps.membership.address,
    }));
  }

  /** Replaces one role's token; the old one is refused by every manager from the moment this answers. */
  async rotateToken(role: NodeRole, caller?: Caller): Promise<JoinTokens> {
    const { state, store, clock, random, logger } = this.deps;
    await transact(store, async (tx) => {
      const [tokens, ca] = [await tx.get(KEYS.tokens), await tx.get(KEYS.ca)];
      if (tokens === undefined || ca === undefined) throw new MusterError('STATE_CORRUPT', 'the store holds no tokens');
      tx.put(KEYS.tokens, {
        ...tokens,
        [role]: storeToken(await this.deps.dataKeys.keyFor(tx), role, generateJoinToken(rootDigest(ca.rootPem), random)),
        rotatedAt: { ...tokens.rotatedAt, [role]: clock.now() },
      });
    });
    await state.refresh();
    this.deps.audit.record({ action: 'join-token.rotate', caller, target: { role }, result: 'ok' });
    logger.info({ role, ...who(caller) }, 'join token rotated');
    return this.joinTokens();
  }
}
