/**
 * Interop with Docker Swarm and cfssl (issue 16, items 1–4): a root given in
 * any PEM shape gives Swarm's token; an external CA URL copied from a Docker
 * setup works; the manager presents its certificate to a cfssl behind mutual
 * TLS; a cfssl profile longer than --cert-expiry neither makes nodes renew
 * in a loop nor is hidden from the admin.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeBase36 } from '../../src/token/base36.js';
import { startCfssl } from '../helpers/cfssl.js';
import { runInProcess } from '../helpers/cli.js';
import { curl } from '../helpers/curl.js';
import { openssl, opensslFixtures } from '../helpers/openssl.js';
import { testScope } from '../helpers/scope.js';
import { slow } from '../helpers/slowdown.js';

const { scratch, dir, start, keep } = testScope('muster-interop-', { env: { MUSTER_POLL_INTERVAL: '1s' } });
const fx = opensslFixtures(scratch);
/** Swarm's token digest for root bytes: SHA-256 as base36, 50 digits. */
const swarmDigest = (pem: string): string => encodeBase36(createHash('sha256').update(pem).digest(), 50);

describe('--ca-cert in canonical PEM', () => {
  const keyFile = fx.key('ec:P-256');
  const clean = fx.selfSigned(keyFile, { ca: true, days: 3650, subject: '/CN=corp-root' });
  const variants: [string, string][] = [
    ['clean', clean],
    ['CRLF line ends', clean.replace(/\n/g, '\r\n')],
    ['an openssl x509 -text preamble', openssl(['x509', '-text'], clean)],
    ['no final newline', clean.trimEnd()],
  ];

  it.each(variants)('%s: the same token digest as Swarm, and /v1/ca serves the canonical bytes', async (name, text) => {
    const certFile = scratch.write(`root-${name.replace(/\W+/g, '-')}.pem`, text);
    const m = start([
      'init',
      '--data-dir',
      dir(`canon-${name.replace(/\W+/g, '-')}`),
      '--listen-addr',
      '127.0.0.1:0',
      '--ca-cert',
      certFile,
      '--ca-key',
      keyFile,
    ]);
    const { address } = await m.ready;
    const token = /SWMTKN-1-([0-9a-z]{50})-/.exec(m.stdout())![1];
    expect(token).toBe(swarmDigest(clean));
    expect((await curl(['-k', `https://${address}/v1/ca`])).body).toBe(clean);
    await m.stop();
  });
});

describe('external CA: a URL with a path, mutual TLS, and a profile longer than --cert-expiry', () => {
  it('takes url= as SwarmKit does; presents the manager certificate to a cfssl behind mutual TLS; says what the CA really issues and does not loop renewals', {
    timeout: slow(90_000),
  }, async () => {
    const plain = keep(await startCfssl(dir('cfssl-plain'), { expiry: '2h' }));
    // The same root behind mutual TLS: cfssl only answers clients whose certificate the cluster root signed.
    const mutual = keep(await startCfssl(dir('cfssl-mutual'), { root: plain.root, mutualTlsCa: plain.rootFile, expiry: '2h' }));
    const m = start([
      'init',
      '--data-dir',
      dir('ext-m'),
      '--listen-addr',
      '127.0.0.1:0',
      '--ca-cert',
      plain.rootFile,
      '--external-ca',
      `protocol=cfssl,url=${plain.url}/api/v1/cfssl/sign,cacert=${plain.rootFile}`,
    ]);
    const { address } = await m.ready;
    const token = /SWMTKN-1-\S+/.exec(m.stdout())![0];
    // Switch to the mutual-TLS cfssl: muster presents its manager certificate and is let in.
    const switched = runInProcess(['update', '--external-ca', `protocol=cfssl,url=${mutual.url},cacert=${mutual.rootFile}`, '--data-dir', dir('ext-m')]);
    expect(await switched.exit, switched.stderr()).toBe(0);
    const before = mutual.log().match(/signature request received/gi)?.length ?? 0;
    const w = start(['join', '--token', token, address!, '--data-dir', dir('ext-w')]);
    await w.ready;
    expect(mutual.log().match(/signature request received/gi)?.length ?? 0).toBeGreaterThan(before);
    // A shorter expiry than the CA's profile: the CLI says what the CA issues, and nodes do not renew for it.
    const update = runInProcess(['update', '--cert-expiry', '1h', '--data-dir', dir('ext-m')]);
    expect(await update.exit, update.stderr()).toBe(0);
    expect(update.stdout()).toMatch(
      /Certificate expiry set to 1h, but an external CA signs for this cluster and its own profile sets the lifetime \(it issues 2h certificates\)/,
    );
    w.renew(); // a renewal asked for by hand goes through the mutual-TLS cfssl too
    await w.waitFor(/renewed until/);
    // What every poll asks: no renewal for an expiry the CA's profile overrides (before: one per poll, forever).
    const certs = join(dir('ext-w'), 'certificates');
    const polled = await curl([
      '--cacert',
      join(certs, 'root-ca.crt'),
      '--cert',
      join(certs, 'node.crt'),
      '--key',
      join(certs, 'node.key'),
      `https://${address}/v1/nodes/self`,
    ]);
    expect(polled.json()).toMatchObject({ renewNow: false, certExpiry: '1h' });
  });
});
