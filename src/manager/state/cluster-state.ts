/**
 * The cluster-wide records every request needs (settings, CA, tokens), read
 * through the store and kept fresh from its change feed, and the signer made
 * from the CA record. A cached record is only ever used together with its
 * version: writes compare it (see `transact`), so a manager whose cache is
 * behind fails its commit, refreshes and decides again instead of acting on
 * what the store no longer holds (a rotated token, a shorter expiry).
 */
import { X509Certificate } from 'node:crypto';
import { MusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { rootDigest } from '../../pki/ca.js';
import { KEYS, META_PREFIX, decodeRecord, type ClusterStore, type Entry, type Ref } from '../../store/cluster-store.js';
import type { CaRecord, ClusterRecord, CrlRecord, TokensRecord } from '../../store/records.js';
import type { Signer } from './signing.js';
import type { Static, TSchema } from 'typebox';
import { storedTokenHash } from './stored-tokens.js';
import type { NodeRole } from '../../core/roles.js';

/** What the state is built from. */
export interface ClusterStateDeps {
  store: ClusterStore;
  logger: Logger;
  /** Makes the signer for a CA record (see signer.ts). */
  createSigner: (ca: CaRecord) => Signer;
}

/** The root bundle and the facts derived from it. */
export interface RootFacts {
  /** The bundle, exact bytes. */
  pem: string;
  cert: X509Certificate;
  /** SHA-256 of the bundle, hex. */
  digestHex: string;
}

function rootFacts(pem: string): RootFacts {
  return { pem, cert: new X509Certificate(pem), digestHex: rootDigest(pem).toString('hex') };
}

/** Which roots are trusted, and which one signs, as the CA record says (a rotation moves them). */
export interface TrustFacts {
  /** What nodes trust: the root, and the new root too while a rotation runs (PEM blocks, concatenated). */
  bundlePem: string;
  /** Roots a caller's certificate may chain to: the current root, the rotation's new one, and roots a rotation replaced until `until`. */
  roots: { cert: X509Certificate; until?: number }[];
  /** The root that signs now (the new one while a rotation runs): a node whose certificate is from another is told to renew. */
  signing: RootFacts;
  /** The new root cross-signed by the root before it, for each root a rotation replaced or is replacing (PEM). */
  crossSigned: string[];
  /** The same, each with the end of the trust in the root it was kept for (none for the rotation under way): what managers serve their certificates with. */
  vouchers: { pem: string; until?: number }[];
  /** The admin CA's self-signed certificate (admin-ca.ts): API users' certificates may chain to it instead of a root. */
  admin: X509Certificate | undefined;
}

function trustFacts(ca: CaRecord, current: RootFacts): TrustFacts {
  const next = ca.rotation === undefined ? undefined : rootFacts(ca.rotation.rootPem);
  const previous = ca.previous ?? [];
  return {
    bundlePem: next === undefined ? current.pem : `${current.pem}${next.pem}`,
    roots: [
      { cert: current.cert },
      ...(next === undefined ? [] : [{ cert: next.cert }]),
      ...previous.map((p) => ({ cert: new X509Certificate(p.rootPem), until: p.until })),
    ],
    signing: next ?? current,
    crossSigned: [...(ca.rotation === undefined ? [] : [ca.rotation.crossSignedPem]), ...previous.map((p) => p.crossSignedPem)],
    vouchers: [
      ...(ca.rotation === undefined ? [] : [{ pem: ca.rotation.crossSignedPem }]),
      ...previous.map((p) => ({ pem: p.crossSignedPem, until: p.until })),
    ],
    admin: ca.admin === undefined ? undefined : new X509Certificate(ca.admin.certPem),
  };
}

/** The manager's view of the cluster-wide records. */
export class ClusterState {
  private signerNow: Signer;
  private rootNow: RootFacts;
  private trustNow: TrustFacts;
  private readonly unwatch: () => void;

  private constructor(
    private readonly deps: ClusterStateDeps,
    private clusterEntry: Entry<ClusterRecord>,
    private caEntry: Entry<CaRecord>,
    private tokensEntry: Entry<TokensRecord>,
    /** The CRL's number and issue time; absent until the first revocation or CRL. */
    private crlEntry: Entry<CrlRecord> | undefined,
  ) {
    this.signerNow = deps.createSigner(caEntry.value);
    this.rootNow = rootFacts(caEntry.value.rootPem);
    this.trustNow = trustFacts(caEntry.value, this.rootNow);
    this.unwatch = deps.store.watch(META_PREFIX, (event) => {
      if (event.type === 'resync') {
        void this.refresh().catch((error: unknown) => deps.logger.warn({ code: (error as MusterError).code }, 'cluster state refresh failed'));
        return;
      }
      for (const change of event.changes) {
        const ref = [KEYS.cluster, KEYS.ca, KEYS.tokens, KEYS.crl].find((r) => r.key === change.key);
        if (ref === undefined || change.value === undefined) continue;
        try {
          this.apply(change.key, decodeRecord(ref.schema, change.key, change.value), change.version);
        } catch (error) {
          deps.logger.error({ key: change.key, code: (error as MusterError).code }, 'ignoring a store change that does not match its schema');
        }
      }
    });
  }

  /** Reads the records; STATE_CORRUPT when the store holds no cluster. */
  static async load(deps: ClusterStateDeps): Promise<ClusterState> {
    const [cluster, ca, tokens, crl] = await Promise.all([
      deps.store.get(KEYS.cluster),
      deps.store.get(KEYS.ca),
      deps.store.get(KEYS.tokens),
      deps.store.get(KEYS.crl),
    ]);
    if (cluster === undefined || ca === undefined || tokens === undefined) {
      throw new MusterError('STATE_CORRUPT', `the cluster store (${deps.store.description}) holds no complete cluster`, {
        hint: 'restore the data dir or the store from a backup; starting over would give every node a new identity',
      });
    }
    return new ClusterState(deps, cluster, ca, tokens, crl);
  }

  /** Re-reads every record (after a commit conflict, or when the feed may have missed changes). */
  async refresh(): Promise<void> {
    const { store } = this.deps;
    const [cluster, ca, tokens, crl] = await Promise.all([store.get(KEYS.cluster), store.get(KEYS.ca), store.get(KEYS.tokens), store.get(KEYS.crl)]);
    if (crl !== undefined) this.apply(KEYS.crl.key, crl.value, crl.version);
    if (cluster !== undefined) this.apply(KEYS.cluster.key, cluster.value, cluster.version);
    if (ca !== undefined) this.apply(KEYS.ca.key, ca.value, ca.version);
    if (tokens !== undefined) this.apply(KEYS.tokens.key, tokens.value, tokens.version);
  }

  private apply(key: string, value: unknown, version: number): void {
    if (key === KEYS.cluster.key && version > this.clusterEntry.version) this.clusterEntry = { value: value as ClusterRecord, version };
    if (key === KEYS.tokens.key && version > this.tokensEntry.version) this.tokensEntry = { value: value as TokensRecord, version };
    if (key === KEYS.crl.key && version > (this.crlEntry?.version ?? 0)) this.crlEntry = { value: value as CrlRecord, version };
    if (key === KEYS.ca.key && version > this.caEntry.version) {
      const ca = value as CaRecord;
      const previous = this.signerNow;
      try {
        this.signerNow = this.deps.createSigner(ca);
      } catch (error) {
        this.deps.logger.error({ code: (error as MusterError).code }, 'the new CA record cannot be used; keeping the previous signer');
        return;
      }
      this.caEntry = { value: ca, version };
      if (ca.rootPem !== this.rootNow.pem) this.rootNow = rootFacts(ca.rootPem);
      this.trustNow = trustFacts(ca, this.rootNow);
      void previous.close();
    }
  }

  /** The cached entry of one of the three records, for a transaction to assume. */
  entry<S extends TSchema>(ref: Ref<S>): Entry<Static<S>> {
    if (ref.key === KEYS.cluster.key) return this.clusterEntry as unknown as Entry<Static<S>>;
    if (ref.key === KEYS.ca.key) return this.caEntry as unknown as Entry<Static<S>>;
    if (ref.key === KEYS.tokens.key) return this.tokensEntry as unknown as Entry<Static<S>>;
    throw new MusterError('INTERNAL', `the cluster state does not cache ${ref.key}`);
  }

  get cluster(): ClusterRecord {
    return this.clusterEntry.value;
  }

  get ca(): CaRecord {
    return this.caEntry.value;
  }

  get tokens(): TokensRecord {
    return this.tokensEntry.value;
  }

  private hashesFor: { record: TokensRecord; hashes: Readonly<Record<NodeRole, Buffer>> } | undefined;

  /** The current tokens' SHA-256 hashes, which joins are checked against (made once per record). */
  get tokenHashes(): Readonly<Record<NodeRole, Buffer>> {
    const record = this.tokensEntry.value;
    if (this.hashesFor?.record !== record)
      this.hashesFor = { record, hashes: { worker: storedTokenHash(record.worker), manager: storedTokenHash(record.manager) } };
    return this.hashesFor.hashes;
  }

  /** The CRL's number and issue time as last seen (the feed keeps it fresh). */
  get crl(): CrlRecord | undefined {
    return this.crlEntry?.value;
  }

  get clusterId(): string {
    return this.clusterEntry.value.clusterId;
  }

  get signer(): Signer {
    return this.signerNow;
  }

  /** The trusted roots, the trust bundle nodes keep, and the root that signs (see {@link TrustFacts}). */
  get trust(): TrustFacts {
    return this.trustNow;
  }

  /** The root: its bundle's exact bytes (served and hashed as they are), the parsed certificate, its digest. */
  get root(): RootFacts {
    return this.rootNow;
  }

  /** Stops following the feed and releases the signer. Idempotent. */
  async close(): Promise<void> {
    this.unwatch();
    await this.signerNow.close();
  }
}
