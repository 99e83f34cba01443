/**
 * Real etcd for tests: Debian's etcd-server binary, one or three members on
 * 127.0.0.1 with ports the OS handed out, optionally with TLS and client
 * certificates made with openssl. Members can be SIGKILLed and started again
 * on the same data dir.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { openssl, scratchDir } from './openssl.js';
import { slow } from './slowdown.js';

/** Ports handed out lie below Linux's ephemeral range (32768–60999 by default). */
const PORT_FLOOR = 10_000;
const PORT_CEILING = 32_767;

/**
 * A free TCP port on 127.0.0.1 (bound, then let go), chosen at random below
 * the ephemeral range: a port from that range, let go while its process
 * restarts (a SIGKILLed manager's etcd member), can meanwhile become the
 * local end of any outgoing connection on the machine, and the restart then
 * fails with "address already in use" (seen in a 300-join storm).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = PORT_FLOOR + Math.floor(Math.random() * (PORT_CEILING - PORT_FLOOR + 1));
    const server = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (bound) {
      await new Promise((resolve) => server.close(resolve));
      return port;
    }
    if (attempt >= 100) throw new Error(`no free port between ${PORT_FLOOR} and ${PORT_CEILING} after 100 tries`);
  }
}

/** etcdctl (v3 API) against `endpoint` over TLS, presenting `cred`, trusting the roots in `rootFile`. */
export function etcdctlAs(endpoint: string, rootFile: string, cred: { cert: string; key: string }, args: string[]): { status: number | null; out: string } {
  const run = spawnSync(
    'etcdctl',
    [
      '--endpoints',
      `https://${endpoint}`,
      '--cacert',
      rootFile,
      '--cert',
      cred.cert,
      '--key',
      cred.key,
      '--dial-timeout',
      `${slow(3_000)}ms`,
      '--command-timeout',
      `${slow(5_000)}ms`,
      ...args,
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, ETCDCTL_API: '3' },
      timeout: slow(20_000),
    },
  );
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
}

/** A managed member's --etcd-client-addr/--etcd-peer-addr on 127.0.0.1, with ports the OS handed out. */
export async function memberFlags(): Promise<{ client: string; peer: string; flags: string[] }> {
  const client = `127.0.0.1:${await freePort()}`;
  const peer = `127.0.0.1:${await freePort()}`;
  return { client, peer, flags: ['--etcd-client-addr', client, '--etcd-peer-addr', peer] };
}

/** TLS material for an etcd cluster and one client: a CA, a server certificate for 127.0.0.1, a client certificate. */
export interface EtcdTls {
  caFile: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

function makeTls(scratch: ReturnType<typeof scratchDir>): EtcdTls {
  const p = (name: string): string => scratch.path(name);
  const cnf = scratch.write(
    'san.cnf',
    '[req]\ndistinguished_name=dn\n[dn]\n[server]\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n[client]\nextendedKeyUsage=clientAuth\n',
  );
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.crt'),
    '-subj',
    '/CN=etcd-test-ca',
    '-days',
    '2',
  ]);
  for (const [name, cn, ext] of [
    ['server', '127.0.0.1', 'server'],
    ['client', 'muster', 'client'],
  ] as const) {
    openssl([
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      p(`${name}.key`),
      '-out',
      p(`${name}.csr`),
      '-subj',
      `/CN=${cn}`,
      '-config',
      cnf,
    ]);
    openssl([
      'x509',
      '-req',
      '-in',
      p(`${name}.csr`),
      '-CA',
      p('ca.crt'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-out',
      p(`${name}.crt`),
      '-days',
      '2',
      '-extfile',
      cnf,
      '-extensions',
      ext,
    ]);
  }
  return { caFile: p('ca.crt'), serverCert: p('server.crt'), serverKey: p('server.key'), clientCert: p('client.crt'), clientKey: p('client.key') };
}

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  process?: ChildProcess;
  log: string;
}

/** A running etcd cluster. */
export interface EtcdCluster {
  /** host:port of each member's client URL. */
  endpoints: string[];
  /** The `--store` flag value for muster. */
  storeFlag: string;
  tls?: EtcdTls;
  /** etcdctl with the right endpoints (and TLS flags). */
  ctlArgs(): string[];
  /** Process IDs of the running members (for CPU accounting in benchmarks). */
  pids(): number[];
  /** SIGKILLs member `i`. */
  kill(i: number): Promise<void>;
  /** Starts member `i` again on its data dir. */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

async function waitHealthy(member: Member, scheme: string, tls: EtcdTls | undefined): Promise<void> {
  const deadline = Date.now() + slow(20_000);
  while (Date.now() < deadline) {
    if (/ready to serve client requests/.test(member.log)) return;
    if (member.process?.exitCode !== null && member.process?.exitCode !== undefined) throw new Error(`etcd ${member.name} exited:\n${member.log}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`etcd ${member.name} did not become ready (${scheme}, tls ${tls !== undefined}):\n${member.log}`);
}

/** Starts `size` etcd members (1 or 3), with TLS and client-certificate auth when asked, and `args` added to each member's flags (e.g. a lower --max-txn-ops). */
export async function startEtcd(options: { size?: 1 | 3; tls?: boolean; args?: string[] } = {}): Promise<EtcdCluster> {
  const scratch = scratchDir('muster-etcd-');
  const size = options.size ?? 1;
  const tls = options.tls === true ? makeTls(scratch) : undefined;
  const scheme = tls === undefined ? 'http' : 'https';
  const members: Member[] = [];
  for (let i = 0; i < size; i++)
    members.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort(), dataDir: scratch.path(`m${i}`), log: '' });
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  const launch = (member: Member, state: 'new' | 'existing'): void => {
    const args = [
      '--name',
      member.name,
      '--data-dir',
      member.dataDir,
      '--listen-client-urls',
      `${scheme}://127.0.0.1:${member.clientPort}`,
      '--advertise-client-urls',
      `${scheme}://127.0.0.1:${member.clientPort}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${member.peerPort}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${member.peerPort}`,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-state',
      state,
      '--initial-cluster-token',
      'muster-test',
      // Fast elections on loopback.
      '--heartbeat-interval',
      '50',
      '--election-timeout',
      '500',
      ...(tls === undefined ? [] : ['--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--trusted-ca-file', tls.caFile, '--client-cert-auth']),
      ...(options.args ?? []),
    ];
    member.log = '';
    const child = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (d: Buffer): void => {
      member.log += d.toString('utf8');
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    member.process = child;
  };
  for (const member of members) launch(member, 'new');
  await Promise.all(members.map((m) => waitHealthy(m, scheme, tls)));
  const endpoints = members.map((m) => `127.0.0.1:${m.clientPort}`);
  const killOne = async (member: Member): Promise<void> => {
    const child = member.process;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  return {
    endpoints,
    storeFlag: `etcd://${endpoints.join(',')}`,
    ...(tls === undefined ? {} : { tls }),
    ctlArgs: () => [
      `--endpoints=${endpoints.map((e) => `${scheme}://${e}`).join(',')}`,
      ...(tls === undefined ? [] : [`--cacert=${tls.caFile}`, `--cert=${tls.clientCert}`, `--key=${tls.clientKey}`]),
    ],
    pids: () => members.flatMap((m) => (m.process?.pid === undefined ? [] : [m.process.pid])),
    kill: (i) => killOne(members[i]!),
    async restart(i) {
      const member = members[i]!;
      await killOne(member);
      launch(member, 'existing');
      await waitHealthy(member, scheme, tls);
    },
    async stop() {
      await Promise.all(members.map(killOne));
      scratch.cleanup();
    },
  };
}
