/**
 * Real nginx for tests: one TLS server on 127.0.0.1 and a free port that
 * asks for a client certificate and checks it against a CA bundle and CRLs,
 * in the foreground with its own prefix and configuration in a scratch
 * folder; stop() ends it. It answers 200 with the client's subject when the
 * certificate passed, and nginx's own 400 when it did not.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { watchDaemon, waitListening } from './daemon.js';
import { freePort } from './etcd.js';
import { selfSignedLoopback } from './openssl.js';
import { slow } from './slowdown.js';

/** Debian's nginx (nginx-light). */
export const NGINX = '/usr/sbin/nginx';

/** What an nginx with client-certificate checks is given. */
export interface NginxClientAuth {
  /** ssl_client_certificate: the CA bundle client certificates must chain to. */
  clientCa: string;
  /** ssl_crl: the CRL file (PEM, one CRL or several). */
  crl: string;
  /** ssl_verify_depth. */
  verifyDepth: number;
}

/** A running nginx. */
export interface NginxServer {
  url: string;
  /** Its own server certificate (self-signed, for 127.0.0.1): the CA file for curl. */
  serverCert: string;
  /** What nginx wrote to stderr (its error log). */
  log(): string;
  stop(): Promise<void>;
}

/** Starts nginx in `dir` (created) with `auth`, serving `server` (else a self-signed certificate for 127.0.0.1); resolves once it accepts connections. */
export async function startNginx(dir: string, auth: NginxClientAuth, server?: { cert: string; key: string }): Promise<NginxServer & { conf: string }> {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const serverKey = server?.key ?? join(dir, 'server.key');
  const serverCert = server?.cert ?? join(dir, 'server.crt');
  if (server === undefined) selfSignedLoopback(serverKey, serverCert, 'nginx-test', 2);
  const port = await freePort();
  const temp = (name: string): string => join(dir, name);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `pid ${join(dir, 'nginx.pid')};
worker_processes 1;
error_log stderr info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${temp('body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${serverCert};
    ssl_certificate_key ${serverKey};
    ssl_verify_client on;
    ssl_client_certificate ${auth.clientCa};
    ssl_crl ${auth.crl};
    ssl_verify_depth ${auth.verifyDepth};
    location / { default_type text/plain; return 200 "$ssl_client_s_dn\\n"; }
  }
}
`,
  );
  const child = spawn(NGINX, ['-p', dir, '-c', conf, '-e', 'stderr', '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon = watchDaemon(child);
  await waitListening('nginx', port, child, daemon, slow(10_000));
  return { url: `https://127.0.0.1:${port}/`, serverCert, conf, ...daemon };
}
