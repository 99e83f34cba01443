/**
 * Real Docker Engine for tests (Debian's docker.io): one dockerd per test,
 * isolated in a scratch folder (its own data root, exec root, pid file,
 * unix socket and containerd namespace), serving the API over TLS on
 * 127.0.0.1 and a free port with `--tlsverify` — Docker's TLS guide's
 * daemon — and no networking of its own (no iptables, no bridge). stop()
 * ends it and the containerd it started.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './etcd.js';

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
  const child = spawn(
    DOCKERD,
    [
      '--data-root', join(dir, 'data'),
      '--exec-root', join(dir, 'exec'),
      '--pidfile', join(dir, 'dockerd.pid'),
      '--host', `unix://${join(dir, 'docker.sock')}`,
      '--host', `tcp://${address}`,
      '--tlsverify',
      '--tlscacert', tls.caFile,
      '--tlscert', tls.certFile,
      '--tlskey', tls.keyFile,
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      '--containerd-namespace', `muster-${port}`,
      '--containerd-plugins-namespace', `muster-${port}-plugins`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (log += d.toString('utf8')));
  const exit = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exit;
    clearTimeout(killer);
    // The containerd dockerd started for itself ends with it; one that outlived a SIGKILL is ended here.
    spawnSync('pkill', ['-f', `containerd.*${join(dir, 'exec')}`]);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`dockerd exited at start:\n${log}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`dockerd did not listen on ${address}:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { address, log: () => log, stop };
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
