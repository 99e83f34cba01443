/**
 * The bridge from Flocker's offline CA to a live cluster (issue 30): a root
 * made by `muster-ca initialize` (RSA-4096, pathlen:0, an OU, a CN that is
 * not swarm-ca) founds a muster cluster with `muster init --ca-cert
 * cluster.crt --ca-key cluster.key`; nodes join and renew under it, and
 * their certificates pass `openssl verify -x509_strict` against cluster.crt.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { canonicalRootPem } from '../../src/pki/ca.js';
import { parseJoinToken } from '../../src/token/join-token.js';
import { curl } from '../helpers/curl.js';
import { runMusterCa } from '../helpers/muster-ca.js';
import { opensslStatus } from '../helpers/openssl.js';
import { testScope } from '../helpers/scope.js';
import { slow } from '../helpers/slowdown.js';

const { dir, start } = testScope('muster-ca-init-', { env: { MUSTER_POLL_INTERVAL: '1s' } });

describe('muster init --ca-cert cluster.crt --ca-key cluster.key on a muster-ca root', () => {
  it('founds a working cluster: the token pins the SHA-256 of the root canonical PEM, a worker joins and renews, every node certificate passes openssl verify -x509_strict', {
    timeout: slow(120_000),
  }, async () => {
    const ca = dir('ca');
    const made = await runMusterCa(['initialize', 'mycluster'], ca); // Flocker's RSA-4096 root, as it is
    expect(made.code, made.stderr).toBe(0);
    const rootFile = join(ca, 'cluster.crt');
    const rootPem = readFileSync(rootFile, 'utf8');
    const root = new X509Certificate(rootPem);
    expect(root.subject).toMatch(/^OU=[0-9a-f-]{36}\nCN=mycluster$/);
    expect(canonicalRootPem(rootPem)).toBe(rootPem); // muster-ca writes the canonical form, so the file's bytes are what is hashed

    const m = start(['init', '--data-dir', dir('m'), '--listen-addr', '127.0.0.1:0', '--ca-cert', rootFile, '--ca-key', join(ca, 'cluster.key')]);
    const { address } = await m.ready;
    const token = /muster join --token (SWMTKN-1-\S+)/.exec(m.stdout())?.[1] ?? '';
    expect(parseJoinToken(token).digest).toEqual(createHash('sha256').update(rootPem).digest());
    const served = await curl(['--cacert', rootFile, `https://${address}/v1/ca`]);
    expect([served.exitCode, served.body], served.stderr).toEqual([0, rootPem]);

    const strict = (file: string) => opensslStatus(['verify', '-x509_strict', '-CAfile', rootFile, file]);
    const managerCert = join(dir('m'), 'certificates', 'node.crt');
    expect(strict(managerCert).output).toBe(`${managerCert}: OK\n`);

    const w = start(['join', '--token', token, address!, '--data-dir', dir('w')]);
    await w.ready;
    const certs = join(dir('w'), 'certificates');
    const workerCert = join(certs, 'node.crt');
    const joined = new X509Certificate(readFileSync(workerCert));
    expect(joined.issuer).toBe(root.subject);
    expect(joined.subject).toMatch(/OU=swarm-worker/);
    expect(strict(workerCert).output).toBe(`${workerCert}: OK\n`);

    w.renew();
    await w.waitFor(/renewed until/);
    const renewed = new X509Certificate(readFileSync(workerCert));
    expect(renewed.serialNumber).not.toBe(joined.serialNumber);
    expect(renewed.checkIssued(root) && renewed.verify(root.publicKey)).toBe(true);
    expect(strict(workerCert).output).toBe(`${workerCert}: OK\n`);
    // The renewed certificate opens the API, with curl and cluster.crt as the only trust.
    const self = await curl(['--cacert', rootFile, '--cert', workerCert, '--key', join(certs, 'node.key'), `https://${address}/v1/nodes/self`]);
    expect([self.exitCode, self.status], self.body + self.stderr).toEqual([0, 200]);
  });
});
