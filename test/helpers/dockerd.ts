/**
 * Real Docker Engine for tests (Debian's docker.io): one dockerd per test,
 * isolated in a scratch folder (its own data root, exec root, pid file,
 * unix socket and containerd namespace), serving the API over TLS on
 * 127.0.0.1 and a free port with `--tlsverify` — Docker's TLS guide's
 * daemon — and no networking of its own (no iptables, no bridge). stop()
 * ends it and the containerd it started.
 *
 * As a user who is not root, dockerd runs in a user namespace where that user
 * is root (as-root.ts), with a mount namespace of its own in which /run and
 * /etc/docker are empty tmpfs: dockerd makes /run/docker/plugins and its key
 * file /etc/docker/key.json there, which belong to the machine's root.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AS_ROOT, IS_ROOT } from './as-root.js';
import { watchDaemon, waitListening } from './daemon.js';
import { freePort } from './etcd.js';
import { slow } from './slowdown.js';

/** Debian's dockerd and the docker CLI. */
export const DOCKERD = '/usr/sbin/dockerd';
export const DOCKER = '/usr/bin/docker';

/** The daemon's TLS files, as Docker's TLS guide names the flags. */
export interface DockerdTls {
  /** --tlscacert: the CA client certificates must chain to. */
  caFile: string;
  /** --tlscert / --tlskey: the daemon's certificate and key. */
  certFile: string;
  keyFile: string;
}

/** A running dockerd. */
export interface Dockerd {
  /** host:port of its TLS listener. */
  address: string;
  /** What it logged. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts dockerd in `dir` (created) with `tls`; resolves once its TLS port accepts connections. */
export async function startDockerd(dir: string, tls: DockerdTls): Promise<Dockerd> {
  for (const sub of ['data', 'exec']) mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const args = [
    '--data-root',
    join(dir, 'data'),
    '--exec-root',
    join(dir, 'exec'),
    '--pidfile',
    join(dir, 'dockerd.pid'),
    '--host',
    `unix://${join(dir, 'docker.sock')}`,
    '--host',
    `tcp://${address}`,
    '--tlsverify',
    '--tlscacert',
    tls.caFile,
    '--tlscert',
    tls.certFile,
    '--tlskey',
    tls.keyFile,
    '--iptables=false',
    '--ip6tables=false',
    '--bridge=none',
    '--containerd-namespace',
    `muster-${port}`,
    '--containerd-plugins-namespace',
    `muster-${port}-plugins`,
  ];
  const [command, ...argv] = IS_ROOT
    ? [DOCKERD, ...args]
    : [...AS_ROOT, '--mount', 'sh', '-c', 'mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /etc/docker && exec "$0" "$@"', DOCKERD, ...args];
  const child = spawn(command!, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon = watchDaemon(child, 15_000);
  const stop = async (): Promise<void> => {
    await daemon.stop();
    // The containerd dockerd started for itself ends with it; one that outlived a SIGKILL is ended here.
    spawnSync('pkill', ['-f', `containerd.*${join(dir, 'exec')}`]);
  };
  await waitListening('dockerd', port, child, { log: daemon.log, stop }, slow(60_000));
  return { address, log: daemon.log, stop };
}

/** Runs the docker CLI against `address` with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH=`certPath` (ca.pem, cert.pem, key.pem). */
export function dockerCli(address: string, certPath: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(DOCKER, args, {
    encoding: 'utf8',
    timeout: 60_000,
    env: { PATH: process.env.PATH ?? '', HOME: certPath, DOCKER_HOST: `tcp://${address}`, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certPath },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}
