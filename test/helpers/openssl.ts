/** Real `openssl` for tests: run it, and make keys, CSRs and certificates with it. */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A real RSA-8192 CSR (public material only; the key was thrown away), made once with
 * `openssl req -new -newkey rsa:8192 -nodes -subj /CN=rsa-8192-fixture`: generating an
 * 8192-bit key takes from seconds to over a minute on a busy machine.
 */
export const RSA_8192_CSR = new URL('../pki/fixtures/rsa-8192.csr', import.meta.url);

/** A scratch folder that tests remove in afterAll. */
export function scratchDir(prefix = 'muster-test-'): {
  dir: string;
  path: (name: string) => string;
  write: (name: string, data: string | Buffer) => string;
  cleanup: () => void;
} {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    path: (name) => join(dir, name),
    write: (name, data) => {
      const file = join(dir, name);
      writeFileSync(file, data);
      return file;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Runs openssl and returns stdout; throws with stderr on failure. */
export function openssl(args: string[], input?: string | Buffer): string {
  return execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs openssl and returns its exit status and combined output, never throwing. */
export function opensslStatus(args: string[]): { status: number; output: string } {
  const result = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: result.status ?? 1, output: `${result.stdout}${result.stderr}` };
}

/** A root CA made with openssl ("O=Corp, CN=corp-root", P-256, ten years) at `keyPath` and `certPath`: one whose key the test knows. */
export function corpRoot(keyPath: string, certPath: string): void {
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath]);
  openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    keyPath,
    '-subj',
    '/O=Corp/CN=corp-root',
    '-days',
    '3650',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    certPath,
  ]);
}

/** A self-signed P-256 server certificate for 127.0.0.1, its key and certificate written to the paths given. */
export function selfSignedLoopback(keyPath: string, certPath: string, commonName: string, days = 1): void {
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    certPath,
    '-subj',
    `/CN=${commonName}`,
    '-days',
    String(days),
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  ]);
}

/** A minimal config so `openssl req` adds only the extensions a test asks for. */
const MIN_CONFIG = '[req]\ndistinguished_name=dn\nprompt=no\n[dn]\n';

/** Makes OpenSSL fixtures inside a scratch dir. */
export function opensslFixtures(scratch: ReturnType<typeof scratchDir>) {
  const config = scratch.write('min.cnf', MIN_CONFIG);
  let n = 0;
  const nextName = (ext: string): string => `f${n++}.${ext}`;
  const next = (ext: string): string => scratch.path(nextName(ext));
  return {
    /** A private key: 'ec:P-256', 'ec:secp256k1', 'rsa:2048', 'rsa:2048:3' (public exponent 3), 'ed25519'. */
    key(spec: string): string {
      const file = next('key');
      const [alg, param, exponent] = spec.split(':');
      if (alg === 'ec') openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${param}`, '-out', file]);
      else if (alg === 'rsa')
        openssl([
          'genpkey',
          '-algorithm',
          'RSA',
          '-pkeyopt',
          `rsa_keygen_bits:${param}`,
          ...(exponent === undefined ? [] : ['-pkeyopt', `rsa_keygen_pubexp:${exponent}`]),
          '-out',
          file,
        ]);
      else openssl(['genpkey', '-algorithm', spec.toUpperCase(), '-out', file]);
      return file;
    },
    /** A CSR made by `openssl req`, as PEM text. */
    csr(keyFile: string, opts: { subject?: string; digest?: string } = {}): string {
      const args = ['req', '-new', '-config', config, '-key', keyFile, '-subj', opts.subject ?? '/CN=node'];
      if (opts.digest !== undefined) args.push(`-${opts.digest}`);
      return openssl(args);
    },
    /** A self-signed certificate as PEM text; `ca` adds CA:TRUE. */
    selfSigned(keyFile: string, opts: { ca: boolean; days: number; subject?: string }): string {
      const bc = opts.ca ? 'basicConstraints=critical,CA:TRUE' : 'basicConstraints=critical,CA:FALSE';
      return openssl([
        'req',
        '-x509',
        '-new',
        '-config',
        config,
        '-key',
        keyFile,
        '-subj',
        opts.subject ?? '/CN=corp root',
        '-days',
        String(opts.days),
        '-addext',
        bc,
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
      ]);
    },
    /** A CA:TRUE certificate for `keyFile`, signed by another CA. */
    intermediate(keyFile: string, issuerCert: string, issuerKey: string): string {
      const csrFile = scratch.write(nextName('csr'), this.csr(keyFile, { subject: '/CN=intermediate' }));
      const ext = scratch.write(nextName('ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
      const issuerFile = scratch.write(nextName('pem'), issuerCert);
      return openssl(['x509', '-req', '-in', csrFile, '-CA', issuerFile, '-CAkey', issuerKey, '-CAcreateserial', '-days', '3650', '-extfile', ext]);
    },
    read: (file: string): string => readFileSync(file, 'utf8'),
  };
}

/** `openssl x509 -text -noout` of a PEM certificate. */
export function x509Text(pem: string): string {
  return openssl(['x509', '-noout', '-text'], pem);
}

/**
 * A real `openssl s_server` on 127.0.0.1 with `args` (its certificate, and what it allows): the
 * permissive server a "refuses" test runs the same client against, to prove the client can succeed.
 * Resolves once it listens; `stop()` kills it (call it in a finally).
 */
export function opensslServer(args: string[], timeoutMs = 30_000): Promise<{ port: number; stop: () => void }> {
  const child = spawn('openssl', ['s_server', '-accept', '127.0.0.1:0', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const stop = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`openssl s_server did not listen within ${timeoutMs} ms: ${out}`));
    }, timeoutMs);
    const read = (data: Buffer): void => {
      out += data.toString('utf8');
      const listening = /^ACCEPT .*:(\d+)$/m.exec(out);
      if (listening !== null) {
        clearTimeout(timer);
        resolve({ port: Number(listening[1]), stop });
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`openssl s_server exited (${code}): ${out}`));
    });
  });
}
