/**
 * The cluster store: the interface the manager uses, and its implementation
 * on `level` (LevelDB). One sublevel per kind of record, JSON values, every
 * write fsync'd, and anything that changes two records at once in one batch.
 */
import { Level } from 'level';
import { MusterError } from '../core/errors.js';
import type { CaRecord, CertificateRecord, ClusterRecord, NodeRecord, TokensRecord } from './records.js';

/** Everything `muster init` writes, committed at once. */
export interface InitialState {
  cluster: ClusterRecord;
  ca: CaRecord;
  tokens: TokensRecord;
  node: NodeRecord;
  certificate: CertificateRecord;
}

/** What the manager needs from its store. */
export interface ClusterStore {
  open(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
  /** Writes the founding state; CLUSTER_EXISTS if the store already holds a cluster. */
  initialise(state: InitialState): Promise<void>;
  getCluster(): Promise<ClusterRecord | undefined>;
  putCluster(cluster: ClusterRecord): Promise<void>;
  getCa(): Promise<CaRecord | undefined>;
  putCa(ca: CaRecord): Promise<void>;
  getTokens(): Promise<TokensRecord | undefined>;
  putTokens(tokens: TokensRecord): Promise<void>;
  getNode(id: string): Promise<NodeRecord | undefined>;
  listNodes(): Promise<NodeRecord[]>;
  putNode(node: NodeRecord): Promise<void>;
  /** Writes a node and the certificate just issued to it in one atomic batch. */
  putNodeWithCertificate(node: NodeRecord, certificate: CertificateRecord): Promise<void>;
  /** Records a certificate that belongs to no node (API users). */
  putCertificate(certificate: CertificateRecord): Promise<void>;
  getCertificate(serial: string): Promise<CertificateRecord | undefined>;
  listCertificates(): Promise<CertificateRecord[]>;
}

/** classic-level's `sync` option: fsync the write-ahead log before the write resolves. */
const SYNC = { sync: true };

/** The slice of a level sublevel used here; level's generic typings do not carry `sync`. */
interface Section {
  get(key: string): Promise<unknown>;
  put(key: string, value: unknown, options: typeof SYNC): Promise<void>;
  values(): { all(): Promise<unknown[]> };
}

interface BatchPut {
  type: 'put';
  sublevel: Section;
  key: string;
  value: unknown;
}

/** The default store: LevelDB in a folder (or in memory through `level`'s memory backends in tests). */
export class LevelClusterStore implements ClusterStore {
  private readonly db: Level<string, unknown>;
  private readonly meta: Section;
  private readonly nodes: Section;
  private readonly certs: Section;
  private closed = false;

  constructor(location: string) {
    this.db = new Level<string, unknown>(location, { valueEncoding: 'json' });
    const section = (name: string): Section => this.db.sublevel<string, unknown>(name, { valueEncoding: 'json' }) as unknown as Section;
    this.meta = section('cluster');
    this.nodes = section('nodes');
    this.certs = section('certificates');
  }

  async open(): Promise<void> {
    try {
      await this.db.open();
    } catch (cause) {
      const locked = String((cause as { cause?: unknown }).cause ?? cause).includes('lock');
      throw new MusterError('STATE_CORRUPT', locked ? 'the cluster store is locked: is another muster running on this data dir?' : 'the cluster store cannot be opened', { cause });
    }
  }

  private async batch(puts: BatchPut[]): Promise<void> {
    await (this.db.batch as unknown as (ops: BatchPut[], options: typeof SYNC) => Promise<void>)(puts, SYNC);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.close();
  }

  async initialise(state: InitialState): Promise<void> {
    if ((await this.getCluster()) !== undefined) throw new MusterError('CLUSTER_EXISTS');
    await this.batch(
      [
        { type: 'put', sublevel: this.meta, key: 'ca', value: state.ca },
        { type: 'put', sublevel: this.meta, key: 'tokens', value: state.tokens },
        { type: 'put', sublevel: this.nodes, key: state.node.id, value: state.node },
        { type: 'put', sublevel: this.certs, key: state.certificate.serial, value: state.certificate },
        // Written last in the batch; the batch is atomic either way.
        { type: 'put', sublevel: this.meta, key: 'cluster', value: state.cluster },
      ],
    );
  }

  async getCluster(): Promise<ClusterRecord | undefined> {
    return (await this.meta.get('cluster')) as ClusterRecord | undefined;
  }

  async putCluster(cluster: ClusterRecord): Promise<void> {
    await this.meta.put('cluster', cluster, SYNC);
  }

  async getCa(): Promise<CaRecord | undefined> {
    return (await this.meta.get('ca')) as CaRecord | undefined;
  }

  async putCa(ca: CaRecord): Promise<void> {
    await this.meta.put('ca', ca, SYNC);
  }

  async getTokens(): Promise<TokensRecord | undefined> {
    return (await this.meta.get('tokens')) as TokensRecord | undefined;
  }

  async putTokens(tokens: TokensRecord): Promise<void> {
    await this.meta.put('tokens', tokens, SYNC);
  }

  async getNode(id: string): Promise<NodeRecord | undefined> {
    return (await this.nodes.get(id)) as NodeRecord | undefined;
  }

  async listNodes(): Promise<NodeRecord[]> {
    return (await this.nodes.values().all()) as NodeRecord[];
  }

  async putNode(node: NodeRecord): Promise<void> {
    await this.nodes.put(node.id, node, SYNC);
  }

  async putNodeWithCertificate(node: NodeRecord, certificate: CertificateRecord): Promise<void> {
    await this.batch([
      { type: 'put', sublevel: this.nodes, key: node.id, value: node },
      { type: 'put', sublevel: this.certs, key: certificate.serial, value: certificate },
    ]);
  }

  async putCertificate(certificate: CertificateRecord): Promise<void> {
    await this.certs.put(certificate.serial, certificate, SYNC);
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    return (await this.certs.get(serial)) as CertificateRecord | undefined;
  }

  async listCertificates(): Promise<CertificateRecord[]> {
    return (await this.certs.values().all()) as CertificateRecord[];
  }
}
