/**
 * A managed etcd member (DESIGN §10, `--store etcd`): the etcd server that a
 * manager runs and supervises as its child process, Debian's `etcd-server`
 * (3.4 or later). Client and peer traffic are TLS only, with the manager's
 * own certificate from the cluster CA: etcd checks every client and peer
 * certificate against the cluster's trusted roots (and its CRL), admits as a
 * peer only a certificate naming `swarm-manager` (the SAN every manager
 * certificate has and no other does), and maps a client certificate to the
 * etcd user named by its CN, so only managers that have an etcd user (the
 * serving ones) can open the store.
 *
 * The child dies with its manager (setpriv's parent-death signal where the
 * system has it), is restarted when it dies on its own, and stopped when the
 * manager stops.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { backoffDelay, type BackoffPolicy } from '../core/backoff.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';

/** The SAN that admits a peer: every manager certificate names its role, and only managers have this one. */
export const MEMBER_PEER_HOSTNAME = 'swarm-manager';

/** The oldest etcd a managed member runs on (learners, peer hostname checks, CRL files). */
const MIN_ETCD_VERSION: readonly [number, number] = [3, 4];

/** The TLS files of a member: its certificate and key, the roots it trusts, and the cluster's CRLs. */
export interface MemberTlsFiles {
  certFile: string;
  keyFile: string;
  trustedCaFile: string;
  /** The cluster's revocations (PEM CRLs of every trusted root); etcd refuses a revoked certificate. */
  crlFile?: string;
}

/** Everything a member starts from. */
export interface EtcdMemberConfig {
  /** The etcd binary (see {@link findEtcdBinary}). */
  binary: string;
  /** The member's name: the manager's node ID. */
  name: string;
  /** The member's data (0700, under the manager's data dir). */
  dataDir: string;
  /** host:port clients reach the member on, and the one it listens on (a wildcard host is allowed here). */
  clientAddr: string;
  listenClientAddr: string;
  /** host:port peers reach the member on, and the one it listens on. */
  peerAddr: string;
  listenPeerAddr: string;
  tls: MemberTlsFiles;
  /** `name=https://peer,…` of every member, this one included; read by etcd only on a member's first start. */
  initialCluster: string;
  /** 'new' when founding, 'existing' when joining a running cluster. */
  clusterState: 'new' | 'existing';
  /** Unique per founded cluster, so members of two clusters never mix. */
  clusterToken: string;
  /** Restart as a one-member cluster that keeps the data (a lost quorum's recovery). */
  forceNewCluster?: boolean;
}

/** The URL of a host:port over TLS (an IPv6 host comes in brackets, as formatHostPort writes it). */
export function httpsUrl(hostPort: string): string {
  return `https://${hostPort}`;
}

/** The command line of a member: TLS everywhere, certificates checked on both sides, the store compacted as it goes. */
export function etcdArgs(config: EtcdMemberConfig): string[] {
  const { tls } = config;
  const args = [
    '--name',
    config.name,
    '--data-dir',
    config.dataDir,
    '--listen-client-urls',
    httpsUrl(config.listenClientAddr),
    '--advertise-client-urls',
    httpsUrl(config.clientAddr),
    '--listen-peer-urls',
    httpsUrl(config.listenPeerAddr),
    '--initial-advertise-peer-urls',
    httpsUrl(config.peerAddr),
    '--initial-cluster',
    config.initialCluster,
    '--initial-cluster-state',
    config.clusterState,
    '--initial-cluster-token',
    config.clusterToken,
    // Clients: TLS, a certificate from the cluster CA, mapped to the etcd user of its CN.
    '--cert-file',
    tls.certFile,
    '--key-file',
    tls.keyFile,
    '--trusted-ca-file',
    tls.trustedCaFile,
    '--client-cert-auth',
    // Peers: the same certificates, and only a manager's.
    '--peer-cert-file',
    tls.certFile,
    '--peer-key-file',
    tls.keyFile,
    '--peer-trusted-ca-file',
    tls.trustedCaFile,
    '--peer-client-cert-auth',
    '--peer-cert-allowed-hostname',
    MEMBER_PEER_HOSTNAME,
    // TLS 1.2 suites with forward secrecy only (TLS 1.3 is Go's own and has no weak suites).
    '--cipher-suites',
    'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305',
    // Old revisions go after an hour, so the store does not grow without end.
    '--auto-compaction-mode',
    'periodic',
    '--auto-compaction-retention',
    '1h',
    '--enable-v2=false',
    '--logger',
    'zap',
    '--log-outputs',
    'stderr',
  ];
  if (tls.crlFile !== undefined) args.push('--client-crl-file', tls.crlFile, '--peer-crl-file', tls.crlFile);
  if (config.forceNewCluster === true) args.push('--force-new-cluster');
  return args;
}

/** Reads `etcd --version`'s first line: "etcd Version: 3.4.23". */
export function parseEtcdVersion(text: string): [number, number, number] | undefined {
  const match = /etcd Version:\s*(\d+)\.(\d+)\.(\d+)/.exec(text);
  return match === null ? undefined : [Number(match[1]), Number(match[2]), Number(match[3])];
}

/** The hint for a missing or old etcd: the exact install command. */
const INSTALL_HINT =
  "install Debian's etcd server: 'sudo apt-get install etcd-server' (then 'sudo systemctl disable --now etcd': muster runs its own member), or name a binary with --etcd-binary PATH";

/**
 * Finds the etcd binary: `explicit` (--etcd-binary) or `etcd` on `searchPath`,
 * and checks it runs and is 3.4 or later. ETCD_MISSING with the install
 * command otherwise.
 */
export function findEtcdBinary(params: { explicit?: string; searchPath: string }): { binary: string; version: string } {
  const candidates =
    params.explicit !== undefined
      ? [params.explicit]
      : params.searchPath
          .split(delimiter)
          .filter((dir) => isAbsolute(dir))
          .map((dir) => join(dir, 'etcd'));
  const binary = candidates.find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  const what = params.explicit !== undefined ? params.explicit : 'etcd';
  if (binary === undefined)
    throw new MusterError('ETCD_MISSING', `${what} was not found${params.explicit === undefined ? ' on the PATH' : ''}`, { hint: INSTALL_HINT });
  const run = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const version = parseEtcdVersion(`${run.stdout ?? ''}`);
  if (version === undefined) throw new MusterError('ETCD_MISSING', `${binary} does not run as etcd`, { hint: INSTALL_HINT });
  const [major, minor] = version;
  if (major < MIN_ETCD_VERSION[0] || (major === MIN_ETCD_VERSION[0] && minor < MIN_ETCD_VERSION[1])) {
    throw new MusterError('ETCD_MISSING', `${binary} is etcd ${version.join('.')}; muster needs ${MIN_ETCD_VERSION.join('.')} or later`, {
      hint: INSTALL_HINT,
    });
  }
  return { binary, version: version.join('.') };
}

/** How long a member may take to serve after it starts. */
const READY_TIMEOUT_MS = 60_000;
/** How long a member may take to stop before it is killed. */
const STOP_GRACE_MS = 10_000;
/** The restarts of a member that died. */
const RESTART_BACKOFF: BackoffPolicy = { baseMs: 500, capMs: 30_000 };
/** The line etcd logs once its client listener serves (zap's words, and capnslog's for older builds). */
const SERVING_LINE = /serving client traffic securely|ready to serve client requests/;
/** How much of the member's log is kept for error messages. */
const LOG_TAIL_LINES = 40;

/** Where a member stands. */
export type MemberState = 'starting' | 'serving' | 'restarting' | 'stopped';

/** What the supervisor needs besides the configuration. */
export interface EtcdMemberDeps {
  logger: Logger;
  clock: Clock;
  random: Random;
  /** Whether `setpriv` is there to tie the member's life to this process (tests may say no). */
  setpriv?: string | undefined;
}

/** The etcd process of a manager: started, watched, restarted, stopped. */
export class EtcdMember {
  private child: ChildProcess | undefined;
  private tail: string[] = [];
  private partial = '';
  private stopping = false;
  private restartTimer: TimerHandle | undefined;
  private restarts = 0;
  private currentState: MemberState = 'stopped';
  /** The store removed this member, and it ended. */
  private removed = false;
  private readonly readyWaiters = new Set<{ resolve: () => void; reject: (error: Error) => void }>();
  private readonly endWaiters = new Set<() => void>();

  constructor(
    private config: EtcdMemberConfig,
    private readonly deps: EtcdMemberDeps,
  ) {}

  /** Where the member stands now. */
  get state(): MemberState {
    return this.currentState;
  }

  /** Where the member serves clients (host:port). */
  get clientAddr(): string {
    return this.config.clientAddr;
  }

  /** The member's process ID while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** How many times the member was restarted after it died. */
  get restartCount(): number {
    return this.restarts;
  }

  /** The last lines the member logged. */
  logTail(): string {
    return this.tail.join('\n');
  }

  /** Starts the member and resolves once it serves clients; rejects with its log if it exits first. */
  async start(): Promise<void> {
    this.stopping = false;
    this.launch();
    await this.whenServing(READY_TIMEOUT_MS);
  }

  /**
   * Restarts the member with a changed configuration (new trusted roots, the
   * end of --force-new-cluster) and waits until it serves again.
   */
  async restartWith(change: Partial<EtcdMemberConfig>): Promise<void> {
    await this.stop();
    this.config = { ...this.config, ...change };
    await this.start();
  }

  /** Changes the configuration its next (re)start uses, without restarting it now (the end of --force-new-cluster). */
  configure(change: Partial<EtcdMemberConfig>): void {
    this.config = { ...this.config, ...change };
  }

  /**
   * Resolves true once the member has ended because the store removed it
   * (etcd stops a removed member by itself), false after `timeoutMs` or when
   * it is not running. A demoted manager waits for this before it stops its
   * member: stopped first, a member still counted in the quorum would be
   * missing while the others remove it (two members: no quorum to do so).
   */
  whenRemoved(timeoutMs: number): Promise<boolean> {
    if (this.child === undefined) return Promise.resolve(this.currentState === 'stopped' && this.removed);
    return new Promise<boolean>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.endWaiters.delete(done);
        resolve(this.removed);
      };
      const timer = setTimeout(done, timeoutMs);
      this.endWaiters.add(done);
    });
  }

  /** Stops the member (SIGTERM, SIGKILL after a grace); idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.restartTimer?.cancel();
    this.restartTimer = undefined;
    const child = this.child;
    this.currentState = 'stopped';
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(killer);
  }

  private whenServing(timeoutMs: number): Promise<void> {
    if (this.currentState === 'serving') return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.readyWaiters.delete(waiter);
        reject(new MusterError('ETCD_MEMBER_FAILED', `the etcd member did not serve within ${timeoutMs / 1000} s`, { details: { log: this.logTail() } }));
      }, timeoutMs);
      this.readyWaiters.add(waiter);
    });
  }

  private launch(): void {
    this.currentState = 'starting';
    this.tail = [];
    this.partial = '';
    const args = etcdArgs(this.config);
    const [command, argv] =
      this.deps.setpriv !== undefined ? [this.deps.setpriv, ['--pdeathsig', 'SIGKILL', '--', this.config.binary, ...args]] : [this.config.binary, args];
    const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => this.collect(chunk));
    child.on('error', (error) => this.onExit(child, error.message));
    child.on('exit', (code, signal) => this.onExit(child, signal ?? `exit status ${code}`));
  }

  private collect(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line === '') continue;
      this.tail.push(line);
      if (this.tail.length > LOG_TAIL_LINES) this.tail.shift();
      if (this.currentState === 'starting' && SERVING_LINE.test(line)) this.serving();
      if (/"level":"(error|fatal|panic)"/.test(line))
        this.deps.logger.warn({ member: this.config.name, etcd: line.slice(0, 500) }, 'the etcd member logged an error');
    }
  }

  private serving(): void {
    this.currentState = 'serving';
    this.deps.logger.info(
      { member: this.config.name, client: this.config.clientAddr, peer: this.config.peerAddr, pid: this.child?.pid },
      'the etcd member serves',
    );
    for (const waiter of this.readyWaiters) waiter.resolve();
    this.readyWaiters.clear();
  }

  private onExit(child: ChildProcess, how: string): void {
    if (child !== this.child) return;
    const wasStarting = this.currentState === 'starting';
    this.child = undefined;
    if (this.stopping) return;
    // A member the store removed (its manager demoted or removed) ends by itself, for good: nothing to restart.
    if (this.tail.some((line) => /permanently removed from the cluster/.test(line))) {
      this.currentState = 'stopped';
      this.removed = true;
      for (const waiter of [...this.endWaiters]) waiter();
      this.deps.logger.info({ member: this.config.name }, 'the etcd member was removed from the store and stopped');
      return;
    }
    const error = new MusterError('ETCD_MEMBER_FAILED', `the etcd member ended (${how})`, { details: { log: this.logTail() } });
    if (wasStarting && this.readyWaiters.size > 0) {
      this.currentState = 'stopped';
      for (const waiter of this.readyWaiters) waiter.reject(error);
      this.readyWaiters.clear();
      return;
    }
    this.restarts += 1;
    const delay = backoffDelay(RESTART_BACKOFF, this.restarts, this.deps.random);
    this.currentState = 'restarting';
    this.deps.logger.warn({ member: this.config.name, how, restartInMs: delay, log: this.tail.slice(-5) }, 'the etcd member died; restarting it');
    this.restartTimer = this.deps.clock.setTimer(delay, () => {
      this.restartTimer = undefined;
      if (!this.stopping) this.launch();
    });
  }
}
