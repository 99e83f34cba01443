/**
 * The managed etcd member: a real etcd-server child with TLS from a muster
 * root, checked by a real etcd client presenting certificates of each kind.
 */
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { Etcd3 } from 'etcd3';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { recordingLogger } from '../../src/core/logger.js';
import { systemRandom } from '../../src/core/random.js';
import type { CertRole } from '../../src/core/roles.js';
import { createRootCa, loadSigningCa, type SigningCa } from '../../src/pki/ca.js';
import { createCsr, parseCsr } from '../../src/pki/csr.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { EtcdMember, etcdArgs, findEtcdBinary, parseEtcdVersion, type EtcdMemberConfig } from '../../src/store/etcd-member.js';
import { useClientTls } from '../../src/store/managed-etcd.js';
import { enableManagerAccess, grantManagerAccess, isStoreUserName, managersWithAccess, revokeManagerAccess } from '../../src/store/etcd-access.js';
import { codeOf, codeOfSync } from '../helpers/codes.js';
import { freePort } from '../helpers/etcd.js';
import { scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A certificate of `role` from `ca`, written with its key into the scratch dir. */
function certFiles(
  scratch: ReturnType<typeof scratchDir>,
  ca: SigningCa,
  role: CertRole,
  name: string,
): { certFile: string; keyFile: string; certPem: string; keyPem: string } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = issueCertificate({
    ca,
    csr: parseCsr(createCsr({ privateKey })),
    role,
    commonName: name,
    clusterId: 'c'.repeat(25),
    hosts: ['127.0.0.1'],
    validityMs: 3_600_000,
    clock: systemClock,
    random: systemRandom,
  });
  const keyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { certFile: scratch.write(`${name}.crt`, issued.certPem), keyFile: scratch.write(`${name}.key`, keyPem), certPem: issued.certPem, keyPem };
}

async function memberSetup() {
  const scratch = scratchDir('muster-member-');
  cleanups.push(() => scratch.cleanup());
  const root = createRootCa({ clusterId: 'c'.repeat(25), clock: systemClock, random: systemRandom });
  const ca = loadSigningCa(root);
  const trustedCaFile = scratch.write('trust.pem', root.certPem);
  const manager = certFiles(scratch, ca, 'manager', 'm'.repeat(25));
  const dataDir = scratch.path('etcd');
  mkdirSync(dataDir, { mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const clientAddr = `127.0.0.1:${await freePort()}`;
  const peerAddr = `127.0.0.1:${await freePort()}`;
  const config: EtcdMemberConfig = {
    binary: findEtcdBinary({ searchPath: process.env.PATH ?? '' }).binary,
    name: 'm'.repeat(25),
    dataDir,
    clientAddr,
    listenClientAddr: clientAddr,
    peerAddr,
    listenPeerAddr: peerAddr,
    tls: { certFile: manager.certFile, keyFile: manager.keyFile, trustedCaFile },
    initialCluster: `${'m'.repeat(25)}=https://${peerAddr}`,
    clusterState: 'new',
    clusterToken: 'c'.repeat(25),
  };
  const logger = recordingLogger();
  const member = new EtcdMember(config, { logger, clock: systemClock, random: systemRandom });
  cleanups.push(() => member.stop());
  return { scratch, root, ca, manager, config, member, logger };
}

/** The message a request fails with ('' when it succeeds). */
async function refusalOf(request: Promise<unknown>): Promise<string> {
  try {
    await request;
    return '';
  } catch (error) {
    return String((error as Error).message);
  }
}

/** How a refused client certificate surfaces through etcd3 (gRPC over TLS): the member's bad_certificate alert (42), not a connection refused or a timeout. */
const TLS_REFUSAL = /alert bad certificate/;

function client(endpoint: string, rootPem: string, cert?: { certPem: string; keyPem: string }): Etcd3 {
  const etcd = new Etcd3({
    hosts: `https://${endpoint}`,
    credentials: {
      rootCertificate: Buffer.from(rootPem),
      ...(cert === undefined ? {} : { certChain: Buffer.from(cert.certPem), privateKey: Buffer.from(cert.keyPem) }),
    },
    dialTimeout: slow(3_000),
    defaultCallOptions: () => ({ deadline: Date.now() + slow(3_000) }),
  });
  cleanups.push(() => etcd.close());
  return etcd;
}

describe('etcd member arguments', () => {
  it('serves clients and peers over TLS only, checks client and peer certificates, admits only managers as peers', async () => {
    const { config } = await memberSetup();
    const args = etcdArgs(config);
    const value = (flag: string): string | undefined => args[args.indexOf(flag) + 1];
    expect(value('--listen-client-urls')).toMatch(/^https:\/\//);
    expect(value('--listen-peer-urls')).toMatch(/^https:\/\//);
    expect(value('--initial-advertise-peer-urls')).toMatch(/^https:\/\//);
    expect(args).toContain('--client-cert-auth');
    expect(args).toContain('--peer-client-cert-auth');
    expect(value('--peer-cert-allowed-hostname')).toBe('swarm-manager');
    expect(args).not.toContain('--force-new-cluster');
    expect(etcdArgs({ ...config, forceNewCluster: true, tls: { ...config.tls, crlFile: '/x/crl.pem' } })).toEqual(
      expect.arrayContaining(['--force-new-cluster', '--client-crl-file', '/x/crl.pem', '--peer-crl-file', '/x/crl.pem']),
    );
    expect(args.every((arg) => !/PRIVATE KEY|SWMTKN|SWMKEY/.test(arg))).toBe(true);
  });

  it('reads etcd --version and refuses a missing or old binary with the install command', async () => {
    expect(parseEtcdVersion('etcd Version: 3.4.23\nGit SHA: Not provided')).toEqual([3, 4, 23]);
    expect(parseEtcdVersion('nonsense')).toBeUndefined();
    const scratch = scratchDir('muster-member-bin-');
    cleanups.push(() => scratch.cleanup());
    expect(codeOfSync(() => findEtcdBinary({ searchPath: scratch.dir }))).toBe('ETCD_MISSING');
    expect(() => findEtcdBinary({ searchPath: scratch.dir })).toThrow(
      expect.objectContaining({ hint: expect.stringContaining('apt-get install etcd-server') }),
    );
    const old = scratch.write('etcd', '#!/bin/sh\necho "etcd Version: 3.3.25"\n');
    chmodSync(old, 0o755);
    expect(() => findEtcdBinary({ explicit: old, searchPath: '' })).toThrow(/3\.3\.25; muster needs 3\.4/);
    const notEtcd = scratch.write('not-etcd', '#!/bin/sh\necho hello\n');
    chmodSync(notEtcd, 0o755);
    expect(() => findEtcdBinary({ explicit: notEtcd, searchPath: '' })).toThrow(/does not run as etcd/);
    expect(findEtcdBinary({ searchPath: process.env.PATH ?? '' }).version).toMatch(/^3\.\d+\.\d+$/);
  });
});

describe('a managed etcd member', () => {
  it('serves TLS clients with a certificate from the cluster root, refuses a client without one, and stops', async () => {
    const { config, member, root, manager } = await memberSetup();
    await member.start();
    expect(member.state).toBe('serving');
    const etcd = client(config.clientAddr, root.certPem, manager);
    await etcd.put('k').value('v');
    expect(await etcd.get('k').string()).toBe('v');
    const anonymous = client(config.clientAddr, root.certPem);
    expect(await refusalOf(anonymous.get('k').string())).toMatch(TLS_REFUSAL);
    const pid = member.pid!;
    await member.stop();
    await member.stop();
    expect(member.state).toBe('stopped');
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('refuses a client certificate from another root', async () => {
    const { config, member, root, scratch, manager } = await memberSetup();
    await member.start();
    const foreignCa = loadSigningCa(createRootCa({ clusterId: 'c'.repeat(25), clock: systemClock, random: systemRandom }));
    const foreign = certFiles(scratch, foreignCa, 'manager', 'f'.repeat(25));
    // The same member serves the cluster's own certificate (so the refusal below is about the foreign root).
    const own = client(config.clientAddr, root.certPem, manager);
    await own.put('k').value('v');
    const etcd = client(config.clientAddr, root.certPem, foreign);
    expect(await refusalOf(etcd.get('k').string())).toMatch(TLS_REFUSAL);
  });

  it("useClientTls: a running client presents a new root's certificate from then on; once the member trusts only the new root, a client left on the old certificate is refused, and watches go on", async () => {
    const { config, member, root, manager, scratch } = await memberSetup();
    const next = createRootCa({ clusterId: 'c'.repeat(25), clock: systemClock, random: systemRandom });
    const both = `${root.certPem}${next.certPem}`;
    writeFileSync(config.tls.trustedCaFile, both);
    await member.start();
    const moved = client(config.clientAddr, both, manager);
    const left = client(config.clientAddr, both, manager);
    cleanups.push(
      () => moved.close(),
      () => left.close(),
    );
    await moved.put('k').value('v');
    expect(await left.get('k').string()).toBe('v');
    const seen: string[] = [];
    const watcher = await moved.watch().key('w').create();
    watcher.on('put', (kv) => seen.push(kv.value.toString()));
    // The rotation: certificates from the new root (the member's too), then the member restarts trusting it alone.
    const renewed = certFiles(scratch, loadSigningCa(next), 'manager', 'm'.repeat(25));
    useClientTls(moved, { certPem: renewed.certPem, keyPem: renewed.keyPem, rootPem: both });
    writeFileSync(config.tls.certFile, renewed.certPem);
    writeFileSync(config.tls.keyFile, renewed.keyPem);
    writeFileSync(config.tls.trustedCaFile, next.certPem);
    await member.restartWith({});
    expect(await moved.get('k').string()).toBe('v');
    await expect(left.get('k').string()).rejects.toThrow();
    await moved.put('w').value('after');
    const deadline = Date.now() + 20_000;
    while (!seen.includes('after') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seen).toContain('after');
    await watcher.cancel();
  });

  it('restarts a member that dies, and keeps its data', async () => {
    const { config, member, root, manager, logger } = await memberSetup();
    await member.start();
    const etcd = client(config.clientAddr, root.certPem, manager);
    await etcd.put('kept').value('yes');
    const first = member.pid!;
    process.kill(first, 'SIGKILL');
    const deadline = Date.now() + slow(30_000);
    while (!(member.state === 'serving' && member.pid !== first) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(member.state).toBe('serving');
    expect(member.restartCount).toBe(1);
    expect(logger.records.some((r) => r.message === 'the etcd member died; restarting it')).toBe(true);
    expect(await etcd.get('kept').string()).toBe('yes');
  });

  it('fails to start with the member log when its client port is taken', async () => {
    const { config, member } = await memberSetup();
    const [host, port] = config.listenClientAddr.split(':');
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(Number(port), host, resolve));
    cleanups.push(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
    expect(await codeOf(member.start())).toBe('ETCD_MEMBER_FAILED');
    expect(member.logTail()).toMatch(/address already in use/);
    expect(member.state).toBe('stopped');
  });
});

describe('who may open a managed store (etcd users keyed on certificates)', () => {
  it('admits only the serving managers: a worker, an API user, a removed manager and the root name are refused by etcd', async () => {
    const { config, member, root, manager, ca, scratch } = await memberSetup();
    await member.start();
    const founder = client(config.clientAddr, root.certPem, manager);
    await enableManagerAccess(founder, config.name);
    await founder.put('/muster/x').value('1');
    expect(await managersWithAccess(founder)).toEqual([config.name]);

    const second = certFiles(scratch, ca, 'manager', 's'.repeat(25));
    const worker = certFiles(scratch, ca, 'worker', 'w'.repeat(25));
    const apiUser = certFiles(scratch, ca, 'admin', 'alice');
    const rootNamed = certFiles(scratch, ca, 'admin', 'root');
    const asSecond = client(config.clientAddr, root.certPem, second);
    for (const refused of [asSecond, client(config.clientAddr, root.certPem, worker), client(config.clientAddr, root.certPem, apiUser)]) {
      await expect(refused.get('/muster/x').string()).rejects.toThrow(/user name not found|permission denied|authentication failed/);
    }
    await grantManagerAccess(founder, 's'.repeat(25));
    await grantManagerAccess(founder, 's'.repeat(25));
    expect(await asSecond.get('/muster/x').string()).toBe('1');
    await revokeManagerAccess(founder, 's'.repeat(25));
    await revokeManagerAccess(founder, 's'.repeat(25));
    await expect(asSecond.get('/muster/x').string()).rejects.toThrow(/user name not found|permission denied|authentication failed/);
    // etcd's root user exists (auth needs it), with a password no one kept; a certificate named root is an API user muster refuses to issue.
    expect(isStoreUserName('root')).toBe(true);
    expect(isStoreUserName('s'.repeat(25))).toBe(true);
    expect(isStoreUserName('alice')).toBe(false);
    // Why the name is reserved: etcd admits any certificate of the cluster root whose CN is root.
    expect(await client(config.clientAddr, root.certPem, rootNamed).get('/muster/x').string()).toBe('1');
    await enableManagerAccess(founder, config.name);
    expect(await founder.get('/muster/x').string()).toBe('1');
  });
});
