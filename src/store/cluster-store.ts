/**
 * The cluster store: the interface the manager uses, and its implementation
 * on `level` (LevelDB). One sublevel per kind of record, JSON values, every
 * write fsync'd, and anything that changes two records at once in one batch.
 *
 * Writes are group-committed: while one fsync'd batch is in flight, the
 * writes that arrive queue up and go down together in the next one. Each
 * caller still resolves only once its own records are on disk, and each
 * caller's records stay all-or-nothing. Under a join storm one fsync then
 * covers many joins, so a disk with slow fsyncs (10 ms is common on cloud
 * volumes) does not cap joins at LevelDB's few concurrent writers per fsync.
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
  values(): { all(): Promise<unknown[]> };
}

interface BatchPut {
  type: 'put';
  sublevel: Section;
  key: string;
  value: unknown;
}

/** A caller's writes waiting for the next group commit. */
interface PendingWrite {
  puts: BatchPut[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** At most this many callers share one batch. */
const MAX_GROUP = 256;

/** The default store: LevelDB in a folder (or in memory through `level`'s memory backends in tests). */
export class LevelClusterStore implements ClusterStore {
  private readonly db: Level<string, unknown>;
  private readonly meta: Section;
  private readonly nodes: Section;
  private readonly certs: Section;
  private closed = false;
  private readonly queue: PendingWrite[] = [];
  private draining: Promise<void> | undefined;
  /** Batches written to LevelDB so far (each fsync'd); fewer than the writes when they were grouped. */
  commits = 0;

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

  /** Queues `puts` for the next group commit; resolves once they are fsync'd. */
  private batch(puts: BatchPut[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ puts, resolve, reject });
      this.draining ??= this.drain();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const group = this.queue.splice(0, MAX_GROUP);
      try {
        await this.commit(group.flatMap((write) => write.puts));
        for (const write of group) write.resolve();
      } catch (error) {
        if (group.length === 1) {
          group[0]!.reject(error);
          continue;
        }
        // One caller's bad record must not fail the others: write each alone.
        for (const write of group) {
          await this.commit(write.puts).then(write.resolve, write.reject);
        }
      }
    }
    this.draining = undefined;
  }

  private async commit(puts: BatchPut[]): Promise<void> {
    this.commits++;
    await (this.db.batch as unknown as (ops: BatchPut[], options: typeof SYNC) => Promise<void>)(puts, SYNC);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.draining; // writes already accepted reach the disk first
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
    await this.batch([{ type: 'put', sublevel: this.meta, key: 'cluster', value: cluster }]);
  }

  async getCa(): Promise<CaRecord | undefined> {
    return (await this.meta.get('ca')) as CaRecord | undefined;
  }

  async putCa(ca: CaRecord): Promise<void> {
    await this.batch([{ type: 'put', sublevel: this.meta, key: 'ca', value: ca }]);
  }

  async getTokens(): Promise<TokensRecord | undefined> {
    return (await this.meta.get('tokens')) as TokensRecord | undefined;
  }

  async putTokens(tokens: TokensRecord): Promise<void> {
    await this.batch([{ type: 'put', sublevel: this.meta, key: 'tokens', value: tokens }]);
  }

  async getNode(id: string): Promise<NodeRecord | undefined> {
    return (await this.nodes.get(id)) as NodeRecord | undefined;
  }

  async listNodes(): Promise<NodeRecord[]> {
    return (await this.nodes.values().all()) as NodeRecord[];
  }

  async putNode(node: NodeRecord): Promise<void> {
    await this.batch([{ type: 'put', sublevel: this.nodes, key: node.id, value: node }]);
  }

  async putNodeWithCertificate(node: NodeRecord, certificate: CertificateRecord): Promise<void> {
    await this.batch([
      { type: 'put', sublevel: this.nodes, key: node.id, value: node },
      { type: 'put', sublevel: this.certs, key: certificate.serial, value: certificate },
    ]);
  }

  async putCertificate(certificate: CertificateRecord): Promise<void> {
    await this.batch([{ type: 'put', sublevel: this.certs, key: certificate.serial, value: certificate }]);
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    return (await this.certs.get(serial)) as CertificateRecord | undefined;
  }

  async listCertificates(): Promise<CertificateRecord[]> {
    return (await this.certs.values().all()) as CertificateRecord[];
  }
}
