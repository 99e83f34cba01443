/**
 * The shared store: the ClusterStore contract on etcd v3 (DESIGN §10), for
 * clusters with several serving managers. All of a cluster's state lives
 * under `/muster/<cluster id>/`; a record's version is its etcd mod_revision
 * and a commit is one etcd Txn whose compares are those versions. The change
 * feed is an etcd watch on the prefix. A manager's registration is a key
 * bound to its lease; the leader is the registration with the lowest create
 * revision (etcd's election recipe), so a dead manager's place is taken
 * within the lease TTL.
 *
 * When etcd cannot be reached every call fails fast with STORE_UNAVAILABLE
 * (retryable); the client reconnects by itself and the watch resumes.
 */
import { ConsecutiveBreaker, ConstantBackoff, ExponentialBackoff, circuitBreaker, handleWhen, retry, type IBackoff } from 'cockatiel';
import { Etcd3, Range, isRecoverableError, type IOptions, type Lease, type Namespace, type Watcher } from 'etcd3';
import type { Static, TSchema } from 'typebox';
import { MusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ManagerRegistration } from './records.js';
import { decodeRecord, type Change, type ChangeEvent, type ClusterStore, type Entry, type Member, type Ref, type Space, type Txn } from './cluster-store.js';

/** How to reach an etcd cluster. */
export interface EtcdConnection {
  /** host:port of each member. */
  endpoints: string[];
  /** TLS: the CA that signed the members' certificates, and this client's certificate and key. */
  cacertPem?: string;
  certPem?: string;
  keyPem?: string;
}

/** How long one etcd call may take before the store is called unavailable. */
const CALL_DEADLINE_MS = 3_000;
/** A manager registration outlives its manager by at most this long. */
const LEASE_TTL_S = 10;
/** Where registrations live, under the cluster prefix. */
const MANAGERS_PREFIX = 'managers/';

/** The key range of a prefix: [prefix, prefix with its last byte + 1). */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

function unavailable(error: unknown): MusterError {
  if (error instanceof MusterError) return error;
  const why = error instanceof Error ? error.message.split('\n')[0]!.slice(0, 200) : String(error);
  return new MusterError('STORE_UNAVAILABLE', `the cluster store (etcd) is unavailable: ${why}`, { cause: error });
}

/** The etcd client options muster uses: TLS when given, short deadlines, one quick retry on another member. */
export function etcdOptions(connection: EtcdConnection): IOptions {
  const tls = connection.cacertPem !== undefined || connection.certPem !== undefined;
  return {
    hosts: connection.endpoints.map((endpoint) => `${tls ? 'https' : 'http'}://${endpoint}`),
    ...(tls
      ? {
          credentials: {
            rootCertificate: Buffer.from(connection.cacertPem ?? ''),
            ...(connection.keyPem === undefined ? {} : { privateKey: Buffer.from(connection.keyPem) }),
            ...(connection.certPem === undefined ? {} : { certChain: Buffer.from(connection.certPem) }),
          },
        }
      : {}),
    dialTimeout: CALL_DEADLINE_MS,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    faultHandling: {
      // A member that failed three times in a row is skipped for 2 s; a failed call is tried once more on another.
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 2_000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 2, backoff: new ConstantBackoff(20) }),
      // etcd3 takes a backoff factory here (its default is one), though its typings name the backoff itself.
      watchBackoff: new ExponentialBackoff({ initialDelay: 200, maxDelay: 3_000 }) as unknown as IBackoff<unknown>,
    },
  };
}

/** The shared store on etcd. */
export class EtcdStore implements ClusterStore {
  private readonly listeners = new Set<(event: ChangeEvent) => void>();
  private watcher: Watcher | undefined;
  private lease: Lease | undefined;
  private registration: ManagerRegistration | undefined;
  private reregistering: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly client: Etcd3,
    private readonly ns: Namespace,
    readonly description: string,
    private readonly logger: Logger,
  ) {}

  /** Connects to etcd for cluster `clusterId`, and checks that it answers. */
  static async connect(params: { connection: EtcdConnection; clusterId: string; logger: Logger }): Promise<EtcdStore> {
    const client = new Etcd3(etcdOptions(params.connection));
    const store = new EtcdStore(client, client.namespace(`/muster/${params.clusterId}/`), `etcd ${params.connection.endpoints.join(',')}`, params.logger);
    try {
      await client.maintenance.status();
    } catch (error) {
      client.close();
      throw unavailable(error);
    }
    return store;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.unregister().catch(() => undefined);
    await this.watcher?.cancel().catch(() => undefined);
    this.client.close();
  }

  async get<S extends TSchema>(ref: Ref<S>): Promise<Entry<Static<S>> | undefined> {
    let response;
    try {
      response = await this.ns.get(ref.key).exec();
    } catch (error) {
      throw unavailable(error);
    }
    const kv = response.kvs[0];
    if (kv === undefined) return undefined;
    return { value: decodeRecord(ref.schema, ref.key, this.parse(ref.key, kv.value)), version: Number(kv.mod_revision) };
  }

  async list<S extends TSchema>(space: Space<S>, page: { after?: string; limit?: number } = {}): Promise<(Entry<Static<S>> & { id: string })[]> {
    const start = page.after === undefined ? space.prefix : `${space.prefix}${page.after}\0`;
    let builder = this.ns.getAll().inRange(new Range(start, prefixEnd(space.prefix))).sort('Key', 'Ascend');
    if (page.limit !== undefined) builder = builder.limit(page.limit);
    let response;
    try {
      response = await builder.exec();
    } catch (error) {
      throw unavailable(error);
    }
    return response.kvs.map((kv) => {
      const key = kv.key.toString('utf8');
      return { id: key.slice(space.prefix.length), value: decodeRecord(space.schema, key, this.parse(key, kv.value)), version: Number(kv.mod_revision) };
    });
  }

  private parse(key: string, value: Buffer): unknown {
    try {
      return JSON.parse(value.toString('utf8'));
    } catch (cause) {
      throw new MusterError('STATE_CORRUPT', `the store record ${key} is not JSON`, { cause });
    }
  }

  async commit(txn: Txn): Promise<boolean> {
    const compares = txn.compares.length > 0 ? txn.compares : [{ key: '~none', version: 0 }];
    const [first, ...rest] = compares;
    let builder = this.ns.if(first!.key, 'Mod', '==', first!.version);
    for (const compare of rest) builder = builder.and(compare.key, 'Mod', '==', compare.version);
    builder = builder.then(
      ...txn.puts.map((put) => this.ns.put(put.key).value(JSON.stringify(put.value))),
      ...txn.deletes.map((key) => this.ns.delete().key(key)),
    );
    try {
      return (await builder.commit()).succeeded;
    } catch (error) {
      throw unavailable(error);
    }
  }

  watch(listener: (event: ChangeEvent) => void): () => void {
    this.listeners.add(listener);
    if (this.watcher === undefined && !this.closed) void this.startWatch();
    return () => this.listeners.delete(listener);
  }

  private async startWatch(): Promise<void> {
    const watcher = this.ns.watch().prefix('').watcher();
    this.watcher = watcher;
    let lost = false;
    watcher.on('data', (response) => {
      const changes: Change[] = [];
      for (const event of response.events ?? []) {
        const kv = event.kv;
        if (kv === null || kv === undefined) continue;
        const key = Buffer.from(kv.key as Buffer).toString('utf8');
        let value: unknown;
        if (event.type !== 'Delete') {
          try {
            value = JSON.parse(Buffer.from(kv.value as Buffer).toString('utf8'));
          } catch {
            continue;
          }
        }
        changes.push({ key, value, version: Number(kv.mod_revision) });
      }
      if (changes.length > 0) this.emit({ type: 'changes', changes });
    });
    watcher.on('disconnected', () => {
      lost = true;
    });
    watcher.on('connected', () => {
      // The watch resumes from its last revision, but whatever it may have missed is re-read.
      if (lost) this.emit({ type: 'resync' });
      lost = false;
    });
    watcher.on('error', (error) => this.logger.warn({ err: error.message }, 'etcd watch failed; it will reconnect'));
  }

  private emit(event: ChangeEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  async register(registration: ManagerRegistration): Promise<void> {
    this.registration = registration;
    await this.putRegistration();
  }

  /** Grants a lease, puts the registration under it, and re-does both whenever the lease is lost. */
  private async putRegistration(): Promise<void> {
    const registration = this.registration;
    if (registration === undefined || this.closed) return;
    const lease = this.ns.lease(LEASE_TTL_S, { autoKeepAlive: true });
    lease.on('lost', () => {
      if (this.lease !== lease || this.registration === undefined || this.closed) return;
      this.logger.warn({}, 'the manager registration lease was lost; registering again');
      this.reregistering ??= this.reregister().finally(() => {
        this.reregistering = undefined;
      });
    });
    try {
      await lease.put(`${MANAGERS_PREFIX}${registration.nodeId}`).value(JSON.stringify(registration)).exec();
    } catch (error) {
      lease.release();
      throw unavailable(error);
    }
    const previous = this.lease;
    this.lease = lease;
    if (previous !== undefined) void previous.revoke().catch(() => undefined);
  }

  private async reregister(): Promise<void> {
    for (let delay = 250; this.registration !== undefined && !this.closed; delay = Math.min(delay * 2, 5_000)) {
      try {
        await this.putRegistration();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
      }
    }
  }

  async unregister(): Promise<void> {
    this.registration = undefined;
    const lease = this.lease;
    this.lease = undefined;
    if (lease !== undefined) await lease.revoke().catch(() => lease.release());
  }

  async members(): Promise<Member[]> {
    let response;
    try {
      response = await this.ns.getAll().prefix(MANAGERS_PREFIX).exec();
    } catch (error) {
      throw unavailable(error);
    }
    const live = response.kvs
      .map((kv) => {
        try {
          return { registration: decodeRecord(ManagerRegistration, kv.key.toString('utf8'), JSON.parse(kv.value.toString('utf8'))), created: Number(kv.create_revision) };
        } catch {
          return undefined;
        }
      })
      .filter((m): m is { registration: ManagerRegistration; created: number } => m !== undefined);
    const leader = live.reduce<{ created: number } | undefined>((best, m) => (best === undefined || m.created < best.created ? m : best), undefined);
    return live.map((m) => ({ registration: m.registration, leader: m === leader }));
  }
}
