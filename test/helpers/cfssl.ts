/** A real `cfssl serve` on loopback over TLS, with a throwaway root (Debian: golang-cfssl; .ci/run installs it). */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { slow } from './slowdown.js';
import { freePort } from './etcd.js';

/** A running cfssl serve. */
export interface CfsslServer {
  url: string;
  /** The cfssl process, to read its CPU time. */
  pid: number | undefined;
  /** The throwaway root and its key, to start a second server with the same root. */
  root: { cert: string; key: string };
  /** The throwaway root, PEM, and its file. */
  rootPem: string;
  rootFile: string;
  /** Lines cfssl logged (it logs each signature). */
  log(): string;
  stop(): Promise<void>;
}

const USAGES = { node: ['signing', 'key encipherment', 'server auth', 'client auth'], client: ['signing', 'client auth'] };

/**
 * Makes a root once per folder and starts cfssl serve with it; `authKeyHex`
 * turns on authsign, `mutualTlsCa` (a file) makes cfssl require client
 * certificates signed by it, `expiry` sets the profiles' lifetime.
 */
export async function startCfssl(
  dir: string,
  options: { authKeyHex?: string; root?: { cert: string; key: string }; mutualTlsCa?: string; expiry?: string } = {},
): Promise<CfsslServer> {
  const cfssl = (args: string[], input?: string): { cert: string; key: string } =>
    JSON.parse(execFileSync('cfssl', args, { cwd: dir, input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] })) as { cert: string; key: string };
  const root =
    options.root ?? cfssl(['gencert', '-initca', '-'], JSON.stringify({ CN: 'corp-root', names: [{ O: 'Corp' }], key: { algo: 'ecdsa', size: 256 } }));
  writeFileSync(join(dir, 'root.pem'), root.cert);
  writeFileSync(join(dir, 'root-key.pem'), root.key);
  const auth = options.authKeyHex === undefined ? {} : { auth_key: 'k' };
  const config = {
    signing: {
      default: { usages: USAGES.node, expiry: options.expiry ?? '2160h', ...auth },
      profiles: {
        node: { usages: USAGES.node, expiry: options.expiry ?? '2160h', ...auth },
        client: { usages: USAGES.client, expiry: options.expiry ?? '2160h', ...auth },
      },
    },
    ...(options.authKeyHex === undefined ? {} : { auth_keys: { k: { type: 'standard', key: options.authKeyHex } } }),
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const server = cfssl(
    ['gencert', '-ca', 'root.pem', '-ca-key', 'root-key.pem', '-config', 'config.json', '-hostname', '127.0.0.1', '-'],
    JSON.stringify({ CN: '127.0.0.1', key: { algo: 'ecdsa', size: 256 } }),
  );
  writeFileSync(join(dir, 'tls.pem'), server.cert);
  writeFileSync(join(dir, 'tls-key.pem'), server.key);
  const port = await freePort();
  let log = '';
  const mutual = options.mutualTlsCa === undefined ? [] : ['-mutual-tls-ca', options.mutualTlsCa];
  const child: ChildProcess = spawn(
    'cfssl',
    [
      'serve',
      '-address',
      '127.0.0.1',
      '-port',
      String(port),
      '-ca',
      'root.pem',
      '-ca-key',
      'root-key.pem',
      '-config',
      'config.json',
      '-tls-cert',
      'tls.pem',
      '-tls-key',
      'tls-key.pem',
      ...mutual,
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (d: Buffer) => (log += d.toString('utf8')));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString('utf8')));
  const url = `https://127.0.0.1:${port}`;
  // cfssl prints nothing when it is ready: connect until it accepts (a TCP connect, so mutual TLS does not get in the way).
  const deadline = Date.now() + slow(10_000);
  while (Date.now() < deadline) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (up) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    pid: child.pid,
    url,
    root,
    rootPem: root.cert,
    rootFile: join(dir, 'root.pem'),
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
