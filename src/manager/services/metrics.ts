/**
 * The manager's metrics in the Prometheus text format (prom-client, one
 * registry per manager so that several managers in one process never mix
 * their counts): joins and renewals by role and result, refusals by error
 * code, issuance latency, store latency, and, read from the store when
 * scraped (at most every 15 s, however often Prometheus asks), nodes by role
 * and status, the soonest node certificate expiry and the uses left on
 * scoped join tokens.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { HostPort } from '../../core/address.js';
import { MusterError } from '../../core/errors.js';
import type { Clock } from '../../core/clock.js';
import { KEYS, pages, type ClusterStore } from '../../store/cluster-store.js';
import { nodeStatus } from './inventory.js';
import { tokenStatus } from './scoped-tokens.js';

/** How long a scan of the inventory serves scrapes. */
const SCAN_TTL_MS = 15_000;
/** Records a scan reads per store call. */
const SCAN_CHUNK = 1_000;

/** What one scan of the store found. */
interface Scan {
  nodes: Map<string, number>;
  soonestExpiry: number | undefined;
  tokens: { id: string; role: string; usesLeft: number }[];
}

/** A manager's metrics. */
export class Metrics {
  readonly registry = new Registry();
  readonly joins: Counter<'role' | 'result'>;
  readonly renewals: Counter<'role' | 'result'>;
  readonly failures: Counter<'code'>;
  readonly issuance: Histogram<'kind'>;
  readonly storeLatency: Histogram<'op'>;
  private scan: { at: number; value: Promise<Scan> } | undefined;

  constructor(private readonly deps: { store: () => ClusterStore; clock: Clock; downAfterMs: number }) {
    const registers = [this.registry];
    this.joins = new Counter({
      name: 'muster_joins_total',
      help: 'Join requests answered, by the role the token grants and result (ok or the error code).',
      labelNames: ['role', 'result'],
      registers,
    });
    this.renewals = new Counter({
      name: 'muster_renewals_total',
      help: 'Renewals answered, by node role and result (ok or the error code).',
      labelNames: ['role', 'result'],
      registers,
    });
    this.failures = new Counter({
      name: 'muster_request_failures_total',
      help: 'Requests answered with an error, by error code.',
      labelNames: ['code'],
      registers,
    });
    this.issuance = new Histogram({
      name: 'muster_issuance_duration_seconds',
      help: 'Time to decide and sign a certificate and commit its records (join, renew, user).',
      labelNames: ['kind'],
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.storeLatency = new Histogram({
      name: 'muster_store_operation_duration_seconds',
      help: 'Cluster store calls, by operation (get, list, commit).',
      labelNames: ['op'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    const scanned = (read: (scan: Scan, set: (labels: Record<string, string>, value: number) => void) => void) =>
      async function collect(this: Gauge<string>): Promise<void> {
        this.reset();
        read(await scanOf(), (labels, value) => this.set(labels, value));
      };
    const scanOf = (): Promise<Scan> => this.scanned();
    new Gauge({
      name: 'muster_nodes',
      help: 'Nodes in the store, by role and status (ready, down, removed).',
      labelNames: ['role', 'status'],
      registers,
      collect: scanned((scan, set) => {
        for (const [key, count] of scan.nodes) {
          const [role = '', status = ''] = key.split('/');
          set({ role, status }, count);
        }
      }),
    });
    new Gauge({
      name: 'muster_node_certificate_soonest_expiry_timestamp_seconds',
      help: 'NotAfter of the node certificate (of a node not removed) that expires first, as a Unix time.',
      registers,
      collect: scanned((scan, set) => {
        if (scan.soonestExpiry !== undefined) set({}, Math.floor(scan.soonestExpiry / 1000));
      }),
    });
    new Gauge({
      name: 'muster_join_token_uses_left',
      help: 'Joins left on each active scoped join token that has a use count.',
      labelNames: ['token', 'role'],
      registers,
      collect: scanned((scan, set) => {
        for (const token of scan.tokens) set({ token: token.id, role: token.role }, token.usesLeft);
      }),
    });
  }

  /** The text a scrape gets. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Times `fn` into the issuance histogram. */
  async timeIssuance<T>(kind: string, fn: () => Promise<T>): Promise<T> {
    const end = this.issuance.startTimer({ kind });
    try {
      return await fn();
    } finally {
      end();
    }
  }

  /** The inventory changed here (a join, a removal): the next scrape reads it again. */
  inventoryChanged(): void {
    this.scan = undefined;
  }

  private scanned(): Promise<Scan> {
    const now = this.deps.clock.now();
    if (this.scan === undefined || now - this.scan.at > SCAN_TTL_MS) {
      const value = this.readScan(now);
      this.scan = { at: now, value };
      value.catch(() => {
        if (this.scan?.value === value) this.scan = undefined;
      });
    }
    return this.scan.value;
  }

  private async readScan(now: number): Promise<Scan> {
    const store = this.deps.store();
    const nodes = new Map<string, number>();
    let soonestExpiry: number | undefined;
    for await (const chunk of pages(store, KEYS.nodes, { limit: SCAN_CHUNK })) {
      for (const { value: node } of chunk) {
        const status = nodeStatus(node, now, this.deps.downAfterMs);
        const key = `${node.role}/${status}`;
        nodes.set(key, (nodes.get(key) ?? 0) + 1);
        if (!node.removed && (soonestExpiry === undefined || node.certNotAfter < soonestExpiry)) soonestExpiry = node.certNotAfter;
      }
    }
    const tokens = (await store.list(KEYS.scopedTokens))
      .map((e) => e.value)
      .filter((t) => t.usesLeft !== undefined && tokenStatus(t, now) === 'active')
      .map((t) => ({ id: t.id, role: t.role, usesLeft: t.usesLeft! }));
    return { nodes, soonestExpiry, tokens };
  }
}

/** The store with every get, list and commit timed into `metrics`. */
export function timedStore(store: ClusterStore, metrics: Metrics): ClusterStore {
  // Each op's labelled child is looked up once (prom-client hashes the labels at every call otherwise; every request of a node reads the store).
  const timed = <A extends unknown[], R>(op: string, fn: (...args: A) => Promise<R>) => {
    const bound = metrics.storeLatency.labels({ op });
    return async (...args: A): Promise<R> => {
      const end = bound.startTimer();
      try {
        return await fn(...args);
      } finally {
        end();
      }
    };
  };
  return {
    get description() {
      return store.description;
    },
    close: () => store.close(),
    // Called through `store` each time (not bound once), so a test's spy on the store sees the calls.
    get: timed('get', (ref: Parameters<ClusterStore['get']>[0]) => store.get(ref)) as ClusterStore['get'],
    list: timed('list', (space: Parameters<ClusterStore['list']>[0], page?: Parameters<ClusterStore['list']>[1]) =>
      store.list(space, page),
    ) as ClusterStore['list'],
    commit: timed('commit', (txn: Parameters<ClusterStore['commit']>[0]) => store.commit(txn)),
    watch: (prefix, listener) => store.watch(prefix, listener),
    register: (registration) => store.register(registration),
    unregister: () => store.unregister(),
    members: () => store.members(),
    dump: () => store.dump(),
  };
}

/** A plain-HTTP listener that serves GET /metrics and nothing else. */
export interface MetricsServer {
  address: HostPort;
  close(): Promise<void>;
}

/** Serves `metrics` at `listen` (`--metrics-addr`, meant for loopback: no TLS, no authentication). */
export async function serveMetrics(listen: HostPort, metrics: Metrics): Promise<MetricsServer> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify(new MusterError('ROUTE_NOT_FOUND').toJSON()));
      return;
    }
    metrics.text().then(
      ({ contentType, body }) => response.writeHead(200, { 'content-type': contentType }).end(body),
      () => response.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify(new MusterError('STORE_UNAVAILABLE').toJSON())),
    );
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new MusterError('ADDRESS_IN_USE', `the metrics address ${listen.host}:${listen.port} is already in use`, {
              hint: 'pick another --metrics-addr, or stop the process holding the port',
            })
          : error,
      ),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  return {
    address: { host: listen.host, port: bound.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
