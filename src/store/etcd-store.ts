/**
 * The shared store: the ClusterStore contract on etcd v3 (DESIGN §10), for
 * clusters with several serving managers. All of a cluster's state lives
 * under `/muster/<cluster id>/`; a record's version is its etcd mod_revision
 * and a commit is one etcd Txn whose compares are those versions. The change
 * feed is an etcd watch on the prefix; node records, read on every request
 * of a node, are answered from it once a quorum read has confirmed it is
 * current (feed-cache.ts). A manager's registration is a key
 * bound to its lease; the leader is the registration with the lowest create
 * revision (etcd's election recipe), so a dead manager's place is taken
 * within the lease TTL.
 *
 * When etcd cannot be reached every call fails fast with STORE_UNAVAILABLE
 * (retryable); the client reconnects by itself and the watch resumes. A Txn
 * etcd refuses for its size fails with INTERNAL: retrying cannot help.
 */
import { ConsecutiveBreaker, ConstantBackoff, ExponentialBackoff, circuitBreaker, handleWhen, retry, type IBackoff } from 'cockatiel';
import type { Etcd3, IOptions, Lease, Namespace, Watcher } from 'etcd3';
import { etcd3 } from './etcd3-module.js';
import type { Static, TSchema } from 'typebox';
import { MusterError, isMusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { FeedCache } from './feed-cache.js';
import { ManagerRegistration } from './records.js';
import {
  decodeRecord,
  type Change,
  type ChangeEvent,
  type ClusterStore,
  type Entry,
  type Member,
  type Ref,
  type Space,
  type StoreDump,
  type Txn,
} from './cluster-store.js';

/** How to reach an etcd cluster. */
export interface EtcdConnection {
  /** host:port of each member. */
  endpoints: string[];
  /** TLS: the CA that signed the members' certificates, and this client's certificate and key. */
  cacertPem?: string;
  certPem?: string;
  keyPem?: string;
  /** The name the members' certificates are checked against, when not the endpoint's host (a managed store: every manager certificate names swarm-manager). */
  serverName?: string;
}

/** How long one etcd call may take before the store is called unavailable. */
const CALL_DEADLINE_MS = 3_000;
/** A manager registration outlives its manager by at most this long. */
const LEASE_TTL_S = 10;
/** Where registrations live, under the cluster prefix. */
const MANAGERS_PREFIX = 'managers/';
/** Records per read of a dump. */
const DUMP_PAGE = 500;
/** The records the feed cache keeps: the node records, read on every request a node makes (feed-cache.ts). */
const CACHED_PREFIX = 'nodes/';

/**
 * Grouped Txns in flight at once. One: while it commits, the next group
 * gathers. A gRPC call costs the manager ~0.5 ms of CPU here, so fewer,
 * larger Txns under load are worth the wait of one etcd round trip
 * (bench:join: 2.6 joins per Txn with 4 in flight, more with 1; the manager
 * spent 2.9 ms of CPU per join against 2.4 ms).
 */
const MAX_IN_FLIGHT = 1;
/** etcd refuses a Txn with more than 128 compares or operations (--max-txn-ops); a group stays below. */
const MAX_TXN_OPS = 120;

interface PendingCommit {
  txn: Txn;
  resolve: (ok: boolean) => void;
  reject: (error: unknown) => void;
}

/**
 * Takes from the head of `queue` the commits that can share one Txn: none
 * writes a key another one compares or writes, they agree on every version
 * they compare, and the Txn stays within etcd's operation limit. Merged, they
 * commit together exactly when each would have committed on its own.
 */
function takeGroup(queue: PendingCommit[]): PendingCommit[] {
  const group: PendingCommit[] = [];
  const compared = new Map<string, number>();
  const written = new Set<string>();
  let ops = 0;
  let compares = 0;
  while (queue.length > 0) {
    const { txn } = queue[0]!;
    const writes = [...txn.puts.map((p) => p.key), ...txn.deletes];
    const fits =
      group.length === 0 ||
      (ops + writes.length <= MAX_TXN_OPS &&
        compares + txn.compares.length <= MAX_TXN_OPS &&
        writes.every((key) => !written.has(key) && !compared.has(key)) &&
        txn.compares.every((c) => !written.has(c.key) && (compared.get(c.key) ?? c.version) === c.version));
    if (!fits) break;
    group.push(queue.shift()!);
    for (const c of txn.compares) {
      if (!compared.has(c.key)) compares += 1;
      compared.set(c.key, c.version);
    }
    for (const key of writes) written.add(key);
    ops += writes.length;
  }
  return group;
}

/** One Txn doing what every Txn of a group does. */
function mergeTxns(txns: Txn[]): Txn {
  const compares = new Map<string, number>();
  for (const txn of txns) for (const c of txn.compares) compares.set(c.key, c.version);
  return {
    compares: [...compares].map(([key, version]) => ({ key, version })),
    puts: txns.flatMap((t) => t.puts),
    deletes: txns.flatMap((t) => t.deletes),
  };
}

/** The key range of a prefix: [prefix, prefix with its last byte + 1). */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** etcd's refusals of a Txn for its size (--max-txn-ops, --max-request-bytes): sent again it is refused again. */
const TOO_LARGE = /too many operations in txn request|request is too large/;

/**
 * A Txn etcd refused for its size: muster keeps every transaction within
 * etcd's limits, so this is a bug (INTERNAL), not a store to wait for
 * (STORE_UNAVAILABLE would say "retry").
 */
function tooLarge(txn: Txn, error: unknown): MusterError | undefined {
  const why = error instanceof Error ? error.message.split('\n')[0]!.slice(0, 200) : String(error);
  if (!TOO_LARGE.test(why)) return undefined;
  return new MusterError(
    'INTERNAL',
    `the cluster store (etcd) refused a transaction of ${txn.compares.length} compares and ${txn.puts.length + txn.deletes.length} writes as too large: ${why}`,
    { cause: error, hint: "this is a bug in muster (every transaction should fit etcd's limits); report it with this message" },
  );
}

function unavailable(error: unknown): MusterError {
  if (error instanceof MusterError) return error;
  const why = error instanceof Error ? error.message.split('\n')[0]!.slice(0, 200) : String(error);
  return new MusterError('STORE_UNAVAILABLE', `the cluster store (etcd) is unavailable: ${why}`, { cause: error });
}

/** etcd3's own test of a failure worth another try. */
const recoverable = (error: Error): boolean => etcd3().isRecoverableError(error);

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
    ...(connection.serverName === undefined
      ? {}
      : { grpcOptions: { 'grpc.ssl_target_name_override': connection.serverName, 'grpc.default_authority': connection.serverName } }),
    dialTimeout: CALL_DEADLINE_MS,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    faultHandling: {
      // A member that failed three times in a row is skipped for 2 s; a failed call is tried once more on another.
      host: () => circuitBreaker(handleWhen(recoverable), { halfOpenAfter: 2_000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(recoverable), { maxAttempts: 2, backoff: new ConstantBackoff(20) }),
      // etcd3 takes a backoff factory here (its default is one), though its typings name the backoff itself.
      watchBackoff: new ExponentialBackoff({ initialDelay: 200, maxDelay: 3_000 }) as unknown as IBackoff<unknown>,
    },
  };
}

/** `step`, or nothing more after one call deadline: a close must not hang on a store that no longer answers this manager. */
function bounded(step: Promise<unknown>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise((resolve) => {
    timer = setTimeout(resolve, CALL_DEADLINE_MS);
    timer.unref();
  });
  return Promise.race([step, limit]).finally(() => clearTimeout(timer));
}

/** One etcd watch of a prefix and its listeners. */
interface Feed {
  watcher: Watcher;
  connected: Promise<void>;
  listeners: Set<(event: ChangeEvent) => void>;
}

/** The shared store on etcd. */
export class EtcdStore implements ClusterStore {
  /** One etcd watch per prefix asked for, with its listeners. */
  private readonly watches = new Map<string, Feed>();
  private lease: Lease | undefined;
  private registration: ManagerRegistration | undefined;
  private readonly queue: PendingCommit[] = [];
  private inFlight = 0;
  private idle: (() => void)[] = [];
  private reregistering: Promise<void> | undefined;
  private closed = false;
  /** Node records kept from the change feed (started by the first read of one). */
  private readonly cache: FeedCache;

  private constructor(
    private readonly client: Etcd3,
    private readonly ns: Namespace,
    readonly description: string,
    private readonly logger: Logger,
    now: () => number,
  ) {
    this.cache = new FeedCache(CACHED_PREFIX, (after) => this.newestAfter(after), now);
  }

  /** Connects to etcd for cluster `clusterId`, and checks that it answers. */
  static async connect(params: { connection: EtcdConnection; clusterId: string; logger: Logger; now?: () => number }): Promise<EtcdStore> {
    const { Etcd3 } = etcd3();
    const client = new Etcd3(etcdOptions(params.connection));
    const namespace = client.namespace(`/muster/${params.clusterId}/`);
    const store = new EtcdStore(client, namespace, `etcd ${params.connection.endpoints.join(',')}`, params.logger, params.now ?? Date.now);
    try {
      await client.maintenance.status();
    } catch (error) {
      client.close();
      throw unavailable(error);
    }
    return store;
  }

  /** Whether node records are answered from the change feed now (feed-cache.ts), not read from etcd. */
  get feedCacheServing(): boolean {
    return this.cache.serving;
  }

  /** The etcd client itself, for a managed store's membership and access changes (etcd-admin.ts). */
  get etcd(): Etcd3 {
    return this.client;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Commits already accepted are sent first.
    if (this.inFlight > 0 || this.queue.length > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
    await bounded(this.unregister().catch(() => undefined));
    // A watch whose stream is down (etcd refuses this manager now: it was demoted) waits for a reconnect to cancel: never wait long.
    await Promise.all([...this.watches.values()].map((w) => bounded(w.watcher.cancel().catch(() => undefined))));
    this.client.close();
  }

  async get<S extends TSchema>(ref: Ref<S>): Promise<Entry<Static<S>> | undefined> {
    const cacheable = ref.key.startsWith(CACHED_PREFIX);
    if (cacheable) {
      if (!this.closed) this.feed(CACHED_PREFIX); // the cache fills from it
      const held = this.cache.lookup(ref.key);
      if (held === null) return undefined;
      if (held !== undefined) return { value: decodeRecord(ref.schema, ref.key, this.parse(ref.key, held.text)), version: held.version };
    }
    const mark = this.cache.mark;
    let response;
    try {
      response = await this.ns.get(ref.key).exec();
    } catch (error) {
      throw unavailable(error);
    }
    const kv = response.kvs[0];
    if (kv === undefined) return undefined;
    const text = kv.value.toString('utf8');
    const entry = { value: decodeRecord(ref.schema, ref.key, this.parse(ref.key, text)), version: Number(kv.mod_revision) };
    if (cacheable) this.cache.fill(ref.key, text, entry.version, mark); // a damaged record is never cached
    return entry;
  }

  /** The feed cache's quorum check: the newest mod revision of a cached record changed after `after` (0: none). */
  private async newestAfter(after: number): Promise<number> {
    const response = await this.ns
      .getAll()
      .prefix(CACHED_PREFIX)
      .minModRevision(after + 1)
      .exec();
    return response.kvs.reduce((newest, kv) => Math.max(newest, Number(kv.mod_revision)), 0);
  }

  async list<S extends TSchema>(space: Space<S>, page: { after?: string; limit?: number } = {}): Promise<(Entry<Static<S>> & { id: string })[]> {
    const start = page.after === undefined ? space.prefix : `${space.prefix}${page.after}\0`;
    let builder = this.ns
      .getAll()
      .inRange(new (etcd3().Range)(start, prefixEnd(space.prefix)))
      .sort('Key', 'Ascend');
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

  /**
   * Every record under the cluster prefix as of one etcd revision: the first
   * page fixes the revision, the later ones read at it, so writes made
   * meanwhile are not seen. The live registrations are left out (leases: they
   * mean nothing to another cluster). A revision compacted away meanwhile
   * fails the dump (STORE_UNAVAILABLE) rather than mixing points in time.
   */
  async dump(pageSize = DUMP_PAGE): Promise<StoreDump> {
    const records: StoreDump['records'] = [];
    let revision: string | undefined;
    let start = '';
    for (;;) {
      let builder = this.ns.getAll().inRange(new (etcd3().Range)(start, '\0')).sort('Key', 'Ascend').limit(pageSize);
      if (revision !== undefined) builder = builder.revision(revision);
      let response;
      try {
        response = await builder.exec();
      } catch (error) {
        throw unavailable(error);
      }
      revision ??= response.header.revision;
      for (const kv of response.kvs) {
        const key = kv.key.toString('utf8');
        if (!key.startsWith(MANAGERS_PREFIX)) records.push({ key, value: this.parse(key, kv.value) });
      }
      const last = response.kvs.at(-1);
      if (!response.more || last === undefined) break;
      start = `${last.key.toString('utf8')}\0`;
    }
    return { revision: Number(revision), records };
  }

  private parse(key: string, value: Buffer | string): unknown {
    try {
      return JSON.parse(typeof value === 'string' ? value : value.toString('utf8'));
    } catch (cause) {
      throw new MusterError('STATE_CORRUPT', `the store record ${key} is not JSON`, { cause });
    }
  }

  /**
   * Commits `txn` as an etcd Txn. Concurrent commits are grouped: commits
   * that touch no key another one writes (and agree on the versions they
   * compare) go down as one Txn, so a join storm costs a handful of gRPC
   * calls and raft entries instead of one per join. When a grouped Txn fails,
   * each of its commits is tried alone, so every caller gets its own answer.
   */
  commit(txn: Txn): Promise<boolean> {
    if (this.closed) return Promise.reject(new MusterError('STORE_UNAVAILABLE', 'the cluster store is closed'));
    return new Promise<boolean>((resolve, reject) => {
      this.queue.push({ txn, resolve, reject });
      this.pump();
    });
  }

  /** Starts grouped commits while fewer than MAX_IN_FLIGHT are under way. */
  private pump(): void {
    if (this.inFlight === 0 && this.queue.length === 0) for (const wake of this.idle.splice(0)) wake();
    while (this.inFlight < MAX_IN_FLIGHT && this.queue.length > 0) {
      const group = takeGroup(this.queue);
      this.inFlight += 1;
      void this.commitGroup(group).finally(() => {
        this.inFlight -= 1;
        this.pump();
      });
    }
  }

  /**
   * Sends a group as one Txn. When it fails, the Txn's failure branch has
   * read every compared key: the commits whose versions no longer hold
   * answer false (alone they would fail too), and the others go back to the
   * head of the queue to be sent again together. One stale commit costs its
   * group one more round trip, not one per commit.
   */
  private async commitGroup(group: PendingCommit[]): Promise<void> {
    let current: Map<string, number> | true;
    try {
      current = await this.send(group.length === 1 ? group[0]!.txn : mergeTxns(group.map((p) => p.txn)));
    } catch (error) {
      // Merged, they may pass a limit none passes alone (an etcd with a lower --max-txn-ops): then each goes alone.
      if (group.length === 1 || !isMusterError(error, 'INTERNAL')) {
        for (const pending of group) pending.reject(error);
        return;
      }
      await this.eachAlone(group);
      return;
    }
    if (current === true) {
      for (const pending of group) pending.resolve(true);
      return;
    }
    const again: PendingCommit[] = [];
    for (const pending of group) {
      if (pending.txn.compares.every((c) => (current.get(c.key) ?? 0) === c.version)) again.push(pending);
      else pending.resolve(false);
    }
    if (again.length < group.length) this.queue.unshift(...again);
    // No compare found changed (it cannot happen: the failure branch read at the Txn's revision): each alone, so that every one ends.
    else await this.eachAlone(group);
  }

  /** Sends each commit of `group` as its own Txn, one after another, and answers each. */
  private async eachAlone(group: PendingCommit[]): Promise<void> {
    for (const pending of group) await this.send(pending.txn).then((result) => pending.resolve(result === true), pending.reject);
  }

  /** Commits `txn` as one etcd Txn: true, or (a compare failed) the versions of its compared keys now. */
  private async send(txn: Txn): Promise<true | Map<string, number>> {
    const compares = txn.compares.length > 0 ? txn.compares : [{ key: '~none', version: 0 }];
    const [first, ...rest] = compares;
    let builder = this.ns.if(first!.key, 'Mod', '==', first!.version);
    for (const compare of rest) builder = builder.and(compare.key, 'Mod', '==', compare.version);
    const texts = txn.puts.map((put) => JSON.stringify(put.value));
    builder = builder
      .then(...txn.puts.map((put, i) => this.ns.put(put.key).value(texts[i]!)), ...txn.deletes.map((key) => this.ns.delete().key(key)))
      .else(...compares.map((compare) => this.ns.get(compare.key)));
    let response;
    try {
      response = await builder.commit();
    } catch (error) {
      // Whether it was written is not known: what is held for its keys may be old.
      for (const key of [...txn.puts.map((put) => put.key), ...txn.deletes]) this.cache.forget(key);
      throw tooLarge(txn, error) ?? unavailable(error);
    }
    const cache = this.cache;
    if (!response.succeeded) {
      const current = new Map<string, number>();
      compares.forEach((compare, i) => {
        const kv = response.responses[i]?.response_range?.kvs[0];
        const version = kv === undefined ? 0 : Number(kv.mod_revision);
        current.set(compare.key, version);
        if (version !== compare.version && compare.key.startsWith(CACHED_PREFIX)) cache.forget(compare.key);
      });
      return current;
    }
    // This manager reads its own writes at once; the feed brings them to the others.
    const revision = Number(response.header.revision);
    for (const [i, put] of txn.puts.entries()) if (put.key.startsWith(CACHED_PREFIX)) cache.learn(put.key, texts[i]!, revision);
    for (const key of txn.deletes) if (key.startsWith(CACHED_PREFIX)) cache.learn(key, null, revision);
    return true;
  }

  watch(prefix: string, listener: (event: ChangeEvent) => void): () => void {
    const listeners = this.feed(prefix).listeners;
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  /** The one etcd watch of `prefix`, started at the first need. */
  private feed(prefix: string): Feed {
    let watch = this.watches.get(prefix);
    if (watch === undefined) {
      watch = this.startWatch(prefix);
      this.watches.set(prefix, watch);
    }
    return watch;
  }

  /** Resolves once every change feed asked for is connected (changes from then on reach the listeners). */
  async watching(): Promise<void> {
    await Promise.all([...this.watches.values()].map((w) => w.connected));
  }

  /** Watches the keys under `prefix` (only those: a manager need not decode every node record that changes). */
  private startWatch(prefix: string): Feed {
    const watcher = this.ns.watch().prefix(prefix).watcher();
    const listeners = new Set<(event: ChangeEvent) => void>();
    const emit = (event: ChangeEvent): void => {
      for (const listener of listeners) listener(event);
    };
    const connected = new Promise<void>((resolve) => watcher.once('connected', () => resolve()));
    const cache = prefix === CACHED_PREFIX ? this.cache : undefined;
    let lost = false;
    watcher.on('data', (response) => {
      const changes: Change[] = [];
      let newest = 0;
      for (const event of response.events ?? []) {
        const kv = event.kv;
        if (kv === null || kv === undefined) continue;
        const key = Buffer.from(kv.key as Buffer).toString('utf8');
        const version = Number(kv.mod_revision);
        newest = Math.max(newest, version);
        let value: unknown;
        if (event.type !== 'Delete') {
          const text = Buffer.from(kv.value as Buffer).toString('utf8');
          try {
            value = JSON.parse(text);
          } catch {
            cache?.forget(key);
            continue;
          }
          cache?.learn(key, text, version);
        } else cache?.learn(key, null, version);
        changes.push({ key, value, version });
      }
      if (newest > 0) cache?.delivered(newest);
      if (changes.length > 0) emit({ type: 'changes', changes });
    });
    watcher.on('disconnected', () => {
      lost = true;
      cache?.feedLost();
    });
    watcher.on('connected', (created: { header?: { revision?: string | number } }) => {
      // The watch resumes from its last revision, but whatever it may have missed is re-read.
      // A new watch starts after the revision it was created at: the cache, empty, has missed nothing before it.
      cache?.feedConnected(lost ? undefined : Number(created.header?.revision ?? 0));
      if (lost) emit({ type: 'resync' });
      lost = false;
    });
    watcher.on('error', (error) => this.logger.warn({ err: error.message }, 'etcd watch failed; it will reconnect'));
    return { watcher, connected, listeners };
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
          return {
            registration: decodeRecord(ManagerRegistration, kv.key.toString('utf8'), JSON.parse(kv.value.toString('utf8'))),
            created: Number(kv.create_revision),
          };
        } catch {
          return undefined;
        }
      })
      .filter((m): m is { registration: ManagerRegistration; created: number } => m !== undefined);
    const leader = live.reduce<{ created: number } | undefined>((best, m) => (best === undefined || m.created < best.created ? m : best), undefined);
    return live.map((m) => ({ registration: m.registration, leader: m === leader }));
  }
}
