/**
 * muster-ca, Flocker's offline CA (issue 30): each command run as the real
 * built executable in a scratch folder; every field of what it writes read
 * back with `openssl x509 -text` and with muster's own parser, verified with
 * `openssl verify -x509_strict` against cluster.crt; the control certificate
 * serving curl over real TLS; and the refusals, which write nothing.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyIdentifier } from '../../src/pki/certificate.js';
import { OID } from '../../src/pki/der.js';
import { spkiDer } from '../../src/pki/keys.js';
import { curl } from '../helpers/curl.js';
import { extensionsOf, readText, runMusterCa, type CaRun } from '../helpers/muster-ca.js';
import { opensslStatus, scratchDir, x509Text } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-ca-');
const servers: Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  scratch.cleanup();
});

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TWENTY_YEARS_MS = 20 * 365 * 86_400_000;
const modeOf = (path: string): number => statSync(path).mode & 0o777;
/** A folder in the scratch folder, created. */
const folder = (name: string): string => {
  const dir = scratch.path(name);
  mkdirSync(dir, { recursive: true });
  return dir;
};

/** The root every leaf below is made under: `muster-ca initialize mycluster` with Flocker's default RSA-4096 key. */
const ca = folder('ca');
let init: CaRun;
let root: X509Certificate;
let rootText = '';
let clusterUuid = '';
beforeAll(async () => {
  init = await runMusterCa(['initialize', 'mycluster'], ca);
  expect(init.code, init.stderr).toBe(0);
  root = new X509Certificate(readFileSync(join(ca, 'cluster.crt')));
  rootText = x509Text(readText(join(ca, 'cluster.crt')));
  clusterUuid = /Subject: OU = (\S+), CN = mycluster/.exec(rootText)?.[1] ?? '';
}, slow(60_000));

/** `openssl verify -x509_strict` of a certificate file against cluster.crt. */
const strictVerify = (file: string, extra: string[] = [], caFile = join(ca, 'cluster.crt')) =>
  opensslStatus(['verify', '-x509_strict', ...extra, '-CAfile', caFile, file]);

/** Runs a muster-ca command that must succeed. */
async function made(argv: string[], cwd = ca): Promise<CaRun> {
  const run = await runMusterCa(argv, cwd);
  expect(run.code, run.stderr).toBe(0);
  return run;
}

interface LeafExpectation {
  cn: string;
  /** Node's subjectAltName text, e.g. 'DNS:example.org'; absent: no SAN. */
  san?: string;
  /** The SAN's one GeneralName: its tag ([2] dNSName 0x82, [7] iPAddress 0x87) and content. */
  sanName?: { tag: number; content: Buffer };
  /** extKeyUsage OIDs; absent: no extKeyUsage. */
  eku?: string[];
  key: 'rsa4096' | 'p256';
}

/**
 * Every field of a leaf, three ways: openssl's text, Node's X509Certificate
 * and muster's DER walker; plus 0600 files, a PKCS#8 key that matches, and
 * `openssl verify -x509_strict` against cluster.crt.
 */
function checkLeaf(dir: string, files: { cert: string; key: string }, expected: LeafExpectation): X509Certificate {
  const certFile = join(dir, files.cert);
  const keyFile = join(dir, files.key);
  expect([modeOf(certFile), modeOf(keyFile)]).toEqual([0o600, 0o600]);
  const pem = readText(certFile);
  const keyPem = readText(keyFile);
  expect(keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  const x = new X509Certificate(pem);
  expect(x.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);

  // openssl x509 -text
  const text = x509Text(pem);
  expect(text).toContain(`Issuer: OU = ${clusterUuid}, CN = mycluster\n`);
  expect(text).toContain(`Subject: OU = ${clusterUuid}, CN = ${expected.cn}\n`);
  expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE\n/);
  expect(text).toMatch(/X509v3 Subject Key Identifier: \n\s+[0-9A-F:]{59}\n/);
  const rootSki = /X509v3 Subject Key Identifier: \n\s+([0-9A-F:]{59})\n/.exec(rootText)![1]!;
  expect(text).toMatch(new RegExp(`X509v3 Authority Key Identifier: \\n\\s+${rootSki}\\n`));
  expect(text).toContain('Signature Algorithm: sha256WithRSAEncryption'); // the RSA root signs
  expect(text).toContain(expected.key === 'rsa4096' ? 'Public-Key: (4096 bit)' : 'ASN1 OID: prime256v1');
  if (expected.san === undefined) expect(text).not.toContain('Subject Alternative Name');
  else expect(text).toMatch(new RegExp(`X509v3 Subject Alternative Name: \\n\\s+${expected.san.replace(/\./g, '\\.')}\\n`));
  if (expected.eku === undefined) expect(text).not.toContain('Extended Key Usage');
  else expect(text).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Client Authentication\n/);
  expect(text).not.toContain('X509v3 Key Usage'); // Flocker's leaves carry none

  // muster's own parser (Node's X509Certificate and src/pki/der.ts)
  expect(x.subject).toBe(`OU=${clusterUuid}\nCN=${expected.cn}`);
  expect(x.issuer).toBe(root.subject);
  expect(x.ca).toBe(false);
  expect(x.checkIssued(root) && x.verify(root.publicKey)).toBe(true);
  expect(x.subjectAltName).toBe(expected.san);
  expect(x.keyUsage).toEqual(expected.eku);
  const serial = BigInt(`0x${x.serialNumber}`);
  expect(serial > 0n && serial < 2n ** 128n).toBe(true);
  expect(x.serialNumber).not.toBe(root.serialNumber);
  // 20 years, never past the root: made after it, the leaf ends when the root ends.
  expect(Date.parse(x.validTo)).toBe(Date.parse(root.validTo));
  expect(Date.parse(x.validFrom)).toBeGreaterThanOrEqual(Date.parse(root.validFrom));
  expect(Date.parse(x.validFrom)).toBeLessThanOrEqual(Date.now());
  const ext = extensionsOf(pem);
  const oids = [
    OID.basicConstraints,
    OID.subjectKeyIdentifier,
    OID.authorityKeyIdentifier,
    ...(expected.san === undefined ? [] : [OID.subjectAltName]),
    ...(expected.eku === undefined ? [] : [OID.extKeyUsage]),
  ];
  expect([...ext.keys()]).toEqual(oids);
  expect(ext.get(OID.basicConstraints)!.critical).toBe(true);
  expect(ext.get(OID.basicConstraints)!.value.children()).toEqual([]); // CA:FALSE
  expect(ext.get(OID.subjectKeyIdentifier)!.value.content).toEqual(keyIdentifier(spkiDer(x.publicKey)));
  expect(ext.get(OID.authorityKeyIdentifier)!.value.child(0).content).toEqual(keyIdentifier(spkiDer(root.publicKey)));
  if (expected.sanName !== undefined) {
    const names = ext.get(OID.subjectAltName)!.value.children();
    expect(names.map((n) => [n.tag, n.content])).toEqual([[expected.sanName.tag, expected.sanName.content]]);
  }
  if (expected.eku !== undefined)
    expect(
      ext
        .get(OID.extKeyUsage)!
        .value.children()
        .map((n) => n.oid()),
    ).toEqual(expected.eku);
  expect(x.publicKey.asymmetricKeyType).toBe(expected.key === 'rsa4096' ? 'rsa' : 'ec');
  if (expected.key === 'rsa4096') expect(x.publicKey.asymmetricKeyDetails?.modulusLength).toBe(4096);

  const verified = strictVerify(certFile);
  expect(verified.output, verified.output).toBe(`${certFile}: OK\n`);
  return x;
}

describe('muster-ca initialize', () => {
  it('writes cluster.crt and cluster.key, 0600, and says what flocker-ca says', () => {
    expect(init.stdout).toBe(
      'Created cluster.key and cluster.crt. Please keep cluster.key secret, as anyone who can access it will be able to control your cluster.\n',
    );
    expect(init.stderr).toBe('');
    expect(readdirSync(ca).sort()).toEqual(['cluster.crt', 'cluster.key']);
    expect([modeOf(join(ca, 'cluster.crt')), modeOf(join(ca, 'cluster.key'))]).toEqual([0o600, 0o600]);
    expect(root.checkPrivateKey(createPrivateKey(readFileSync(join(ca, 'cluster.key'))))).toBe(true);
  });

  it('a self-signed RSA-4096 root as openssl x509 -text shows it: CN=<name>, OU=<new UUID>, CA:TRUE pathlen:0 and keyCertSign+cRLSign (critical), SKI, AKI, SHA-256, 20 years', () => {
    expect(clusterUuid).toMatch(UUID_V4);
    expect(rootText).toContain(`Issuer: OU = ${clusterUuid}, CN = mycluster\n`);
    expect(rootText).toContain(`Subject: OU = ${clusterUuid}, CN = mycluster\n`);
    expect(rootText).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:TRUE, pathlen:0\n/);
    expect(rootText).toMatch(/X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign\n/);
    const ski = /X509v3 Subject Key Identifier: \n\s+([0-9A-F:]{59})\n/.exec(rootText)?.[1];
    expect(ski).toBeDefined();
    expect(rootText).toMatch(new RegExp(`X509v3 Authority Key Identifier: \\n\\s+${ski}\\n`));
    expect(rootText).toContain('Public-Key: (4096 bit)');
    expect(rootText).toContain('Signature Algorithm: sha256WithRSAEncryption');
    expect(rootText).not.toContain('Extended Key Usage');
    expect(rootText).not.toContain('Subject Alternative Name');
  });

  it("the same root through muster's own parser, and openssl verify -x509_strict accepts it", () => {
    expect(root.subject).toBe(`OU=${clusterUuid}\nCN=mycluster`);
    expect(root.issuer).toBe(root.subject);
    expect(root.ca).toBe(true);
    expect(root.checkIssued(root) && root.verify(root.publicKey)).toBe(true);
    expect(root.publicKey.asymmetricKeyDetails?.modulusLength).toBe(4096);
    const serial = BigInt(`0x${root.serialNumber}`);
    expect(serial > 0n && serial < 2n ** 128n).toBe(true);
    expect(Date.parse(root.validTo) - Date.parse(root.validFrom)).toBe(TWENTY_YEARS_MS);
    expect(Math.abs(Date.parse(root.validFrom) - Date.now())).toBeLessThan(5 * 60_000);
    const ext = extensionsOf(readText(join(ca, 'cluster.crt')));
    expect([...ext.keys()]).toEqual([OID.basicConstraints, OID.keyUsage, OID.subjectKeyIdentifier, OID.authorityKeyIdentifier]);
    const bc = ext.get(OID.basicConstraints)!;
    expect(bc.critical).toBe(true);
    expect(bc.value.children().map((c) => c.bytes.toString('hex'))).toEqual(['0101ff', '020100']); // CA:TRUE, pathlen 0
    expect(ext.get(OID.keyUsage)!.critical).toBe(true);
    expect(ext.get(OID.keyUsage)!.value.content).toEqual(Buffer.of(0x01, 0x06)); // keyCertSign, cRLSign
    const ski = keyIdentifier(spkiDer(root.publicKey));
    expect(ext.get(OID.subjectKeyIdentifier)!.value.content).toEqual(ski);
    expect(ext.get(OID.authorityKeyIdentifier)!.value.child(0).content).toEqual(ski);
    const verified = strictVerify(join(ca, 'cluster.crt'));
    expect(verified.output).toBe(`${join(ca, 'cluster.crt')}: OK\n`);
  });

  it('--key-type p256: an ECDSA P-256 root, and its leaves signed with ecdsa-with-SHA256', async () => {
    const ec = folder('ec-root');
    await made(['initialize', 'eccluster', '--key-type', 'p256'], ec);
    const text = x509Text(readText(join(ec, 'cluster.crt')));
    expect(text).toContain('ASN1 OID: prime256v1');
    expect(text).toMatch(/Subject: OU = [0-9a-f-]{36}, CN = eccluster\n/);
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    await made(['create-api-certificate', 'carol', '--key-type', 'p256'], ec);
    expect(x509Text(readText(join(ec, 'carol.crt')))).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(strictVerify(join(ec, 'carol.crt'), [], join(ec, 'cluster.crt')).status).toBe(0);
  });
});

describe('muster-ca create-control-certificate', () => {
  it('control-<hostname>.crt/.key for a DNS name: CN=control-service, OU=<root OU>, SAN DNS:<hostname>; Flocker message', async () => {
    const run = await made(['create-control-certificate', 'control.example.org', '--key-type', 'p256']);
    expect(run.stdout).toBe(
      'Created control-control.example.org.crt and control-control.example.org.key\nCopy these files to the directory /etc/flocker on your control service machine.\nRename the files to control-service.crt and control-service.key and set the correct permissions by running chmod 0600 on both files.\n',
    );
    checkLeaf(
      ca,
      { cert: 'control-control.example.org.crt', key: 'control-control.example.org.key' },
      { cn: 'control-service', san: 'DNS:control.example.org', sanName: { tag: 0x82, content: Buffer.from('control.example.org') }, key: 'p256' },
    );
  });

  it('an IP address gets an IP SAN', async () => {
    await made(['create-control-certificate', '127.0.0.1', '--key-type', 'p256']);
    checkLeaf(
      ca,
      { cert: 'control-127.0.0.1.crt', key: 'control-127.0.0.1.key' },
      { cn: 'control-service', san: 'IP Address:127.0.0.1', sanName: { tag: 0x87, content: Buffer.of(127, 0, 0, 1) }, key: 'p256' },
    );
  });
});

describe('muster-ca create-node-certificate', () => {
  it('<uuid>.crt/.key for a new version-4 UUID, printed: CN=node-<uuid>, OU=<root OU>', async () => {
    const run = await made(['create-node-certificate', '--key-type', 'p256']);
    const uuid =
      /^Created (\S+)\.crt and \1\.key\. Copy them over to \/etc\/flocker\/node\.crt and \/etc\/flocker\/node\.key on your node machine and make sure to chmod 0600 them\.\n$/.exec(
        run.stdout,
      )?.[1];
    expect(uuid).toMatch(UUID_V4);
    expect(uuid).not.toBe(clusterUuid);
    checkLeaf(ca, { cert: `${uuid}.crt`, key: `${uuid}.key` }, { cn: `node-${uuid}`, key: 'p256' });
    const again = await made(['create-node-certificate', '--key-type', 'p256']);
    expect(again.stdout).not.toContain(uuid!); // a new UUID each time
  });
});

describe('muster-ca create-api-certificate', () => {
  it("<username>.crt/.key with an RSA-4096 key: CN=user-<username>, OU=<root OU>, extendedKeyUsage clientAuth only; Flocker's message", async () => {
    const run = await made(['create-api-certificate', 'alice']);
    expect(run.stdout).toBe('Created alice.crt and alice.key. You can now give these to your API enduser so they can access the control service API.\n');
    checkLeaf(ca, { cert: 'alice.crt', key: 'alice.key' }, { cn: 'user-alice', eku: [OID.clientAuth], key: 'rsa4096' });
    expect(strictVerify(join(ca, 'alice.crt'), ['-purpose', 'sslclient']).status).toBe(0);
    const asServer = strictVerify(join(ca, 'alice.crt'), ['-purpose', 'sslserver']);
    expect(asServer.status).not.toBe(0);
    expect(asServer.output).toMatch(/unsuitable certificate purpose/);
  });
});

/** An HTTPS server on 127.0.0.1 (a free port) with `cert`/`key`; with `clientCa`, it asks for a client certificate and answers with its CN. */
async function serve(dir: string, files: { cert: string; key: string }, clientCa?: string): Promise<number> {
  const server = createServer(
    {
      cert: readFileSync(join(dir, files.cert)),
      key: readFileSync(join(dir, files.key)),
      ...(clientCa === undefined ? {} : { ca: readFileSync(clientCa), requestCert: true, rejectUnauthorized: true }),
    },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      res.end(`hello ${peer.subject?.CN ?? 'anonymous'}\n`);
    },
  );
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

describe('the certificates over real TLS', () => {
  /** A folder of the test's own with the certificates `commands` make from the root (so each test passes alone). */
  async function own(name: string, ...commands: string[][]): Promise<string> {
    const dir = folder(`tls-${name}`);
    for (const argv of commands) await made([...argv, '--outputpath', dir]);
    return dir;
  }

  it('the control certificate serves curl --cacert cluster.crt https://<hostname> (by DNS name through --resolve, and by IP), and not a name it does not carry', async () => {
    const dir = await own(
      'control',
      ['create-control-certificate', 'control.example.org', '--key-type', 'p256'],
      ['create-control-certificate', '127.0.0.1', '--key-type', 'p256'],
    );
    const byName = await serve(dir, { cert: 'control-control.example.org.crt', key: 'control-control.example.org.key' });
    const ok = await curl([
      '--cacert',
      join(ca, 'cluster.crt'),
      '--resolve',
      `control.example.org:${byName}:127.0.0.1`,
      `https://control.example.org:${byName}/`,
    ]);
    expect([ok.exitCode, ok.status, ok.body], ok.stderr).toEqual([0, 200, 'hello anonymous\n']);
    const wrongName = await curl(['--cacert', join(ca, 'cluster.crt'), `https://127.0.0.1:${byName}/`]);
    expect(wrongName.exitCode).toBe(60);
    const byIp = await serve(dir, { cert: 'control-127.0.0.1.crt', key: 'control-127.0.0.1.key' });
    const ip = await curl(['--cacert', join(ca, 'cluster.crt'), `https://127.0.0.1:${byIp}/`]);
    expect([ip.exitCode, ip.status, ip.body], ip.stderr).toEqual([0, 200, 'hello anonymous\n']);
  });

  it("an API certificate authenticates its user with curl --cert (Flocker's example), and is refused as a server certificate", async () => {
    const dir = await own('user', ['create-control-certificate', 'control.example.org', '--key-type', 'p256'], ['create-api-certificate', 'alice']);
    const mutual = await serve(dir, { cert: 'control-control.example.org.crt', key: 'control-control.example.org.key' }, join(ca, 'cluster.crt'));
    const asUser = await curl([
      '--cacert',
      join(ca, 'cluster.crt'),
      '--cert',
      join(dir, 'alice.crt'),
      '--key',
      join(dir, 'alice.key'),
      '--resolve',
      `control.example.org:${mutual}:127.0.0.1`,
      `https://control.example.org:${mutual}/`,
    ]);
    expect([asUser.exitCode, asUser.body], asUser.stderr).toEqual([0, 'hello user-alice\n']);
    const asServer = await serve(dir, { cert: 'alice.crt', key: 'alice.key' });
    const refused = await curl(['--cacert', join(ca, 'cluster.crt'), '--resolve', `user-alice:${asServer}:127.0.0.1`, `https://user-alice:${asServer}/`]);
    expect(refused.exitCode).toBe(60);
    expect(refused.stderr).toMatch(/unsuitable certificate purpose/);
  });
});

describe('--inputpath, --outputpath, --verbose, --help, --version', () => {
  it('reads the root from --inputpath and writes to --outputpath, naming the files there', async () => {
    const out = folder('out');
    const run = await made(['create-api-certificate', 'dave', '-i', 'ca', '--outputpath', 'out', '--key-type', 'p256'], scratch.dir);
    expect(run.stdout).toBe('Created out/dave.crt and out/dave.key. You can now give these to your API enduser so they can access the control service API.\n');
    expect(readdirSync(out).sort()).toEqual(['dave.crt', 'dave.key']);
    expect(existsSync(join(ca, 'dave.crt'))).toBe(false);
    checkLeaf(out, { cert: 'dave.crt', key: 'dave.key' }, { cn: 'user-dave', eku: [OID.clientAuth], key: 'p256' });
  });

  it('-v says what was written, on standard error', async () => {
    const run = await made(['-v', 'create-api-certificate', 'erin', '--key-type', 'p256']);
    expect(run.stderr).toMatch(
      new RegExp(`^wrote ${join(ca, 'erin.crt')} \\(0600\\): OU=${clusterUuid}, CN=user-erin, serial [0-9A-F]+, valid until 20\\d\\d-`, 'm'),
    );
    expect(run.stderr).toContain(`wrote ${join(ca, 'erin.key')} (0600): ECDSA P-256 private key (PKCS#8)\n`);
    const after = await made(['create-api-certificate', 'frank', '--key-type', 'p256', '--verbose']);
    expect(after.stderr).toContain(`wrote ${join(ca, 'frank.crt')} (0600)`);
  });

  it("--help prints flocker-ca's help under muster-ca's name (so does no command at all); --version the package's version", async () => {
    // The help as Flocker's API guide shows it (seed 002), with the tool's name changed.
    const flocker = [
      'Usage: muster-ca <command> [OPTIONS]',
      'Options:',
      "      --version  Print the program's version and exit.",
      '      --help     Display this help and exit.',
      '  -v, --verbose  Turn on verbose logging.',
      '',
      'muster-ca is used to create TLS certificates.',
      'The certificates are used to identify the control service, nodes',
      'and API clients within a Flocker cluster.',
      'Commands:',
      '    initialize                      Initialize a certificate authority in the current',
      '                                    working directory.',
      '    create-control-certificate      Create a certificate for the control service.',
      '    create-node-certificate         Create a certificate for a node.',
      '    create-api-certificate          Create a certificate for an API user.',
      '',
    ].join('\n');
    const help = await runMusterCa(['--help'], scratch.dir);
    expect(help.code).toBe(0);
    expect(help.stdout.startsWith(flocker)).toBe(true);
    const bare = await runMusterCa([], scratch.dir);
    expect([bare.code, bare.stdout]).toEqual([0, help.stdout]);
    const version = await runMusterCa(['--version'], scratch.dir);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect([version.code, version.stdout]).toEqual([0, `${pkg.version}\n`]);
    const sub = await runMusterCa(['create-api-certificate', '--help'], scratch.dir);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toMatch(/Usage: muster-ca create-api-certificate \[options\] <username>[\s\S]*--inputpath[\s\S]*--outputpath[\s\S]*--key-type/);
  });
});

describe('refusals: a clear error, and nothing written', () => {
  /** Every file under `dir` with its bytes. */
  const snapshot = (dir: string): Record<string, string> =>
    Object.fromEntries(readdirSync(dir).map((name) => [name, readFileSync(join(dir, name)).toString('base64')]));

  it('initialize where a root already is: refused, both files named, the root untouched', async () => {
    const before = snapshot(ca);
    const run = await runMusterCa(['initialize', 'other', '--key-type', 'p256'], ca);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `error: ${join(ca, 'cluster.crt')} and ${join(ca, 'cluster.key')} already exist; muster-ca never overwrites a certificate or a key\nhint: this folder already holds a certificate authority: run muster-ca initialize in another folder, or move the old files away first\n`,
    );
    expect(run.stdout).toBe('');
    expect(snapshot(ca)).toEqual(before);
  });

  it('a certificate whose key file alone exists: refused before anything is made, so no certificate appears either', async () => {
    const out = folder('half');
    writeFileSync(join(out, 'bob.key'), 'keep me');
    const run = await runMusterCa(['create-api-certificate', 'bob', '-i', ca, '-o', out, '--key-type', 'p256'], scratch.dir);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^error: \S+\/half\/bob\.key already exists; muster-ca never overwrites a certificate or a key\nhint: /);
    expect(snapshot(out)).toEqual({ 'bob.key': Buffer.from('keep me').toString('base64') });
  });

  it('no root: each create command says to run muster-ca initialize first', async () => {
    const empty = folder('empty');
    for (const argv of [['create-control-certificate', 'example.org'], ['create-node-certificate'], ['create-api-certificate', 'alice']]) {
      const run = await runMusterCa([...argv, '--key-type', 'p256'], empty);
      expect(run.code, argv.join(' ')).toBe(1);
      expect(run.stderr).toBe(
        `error: unable to load certificate authority file: ${join(empty, 'cluster.crt')} does not exist\nhint: run 'muster-ca initialize <name>' to generate a new certificate authority, or point --inputpath at the folder that holds cluster.crt and cluster.key\n`,
      );
    }
    copyFileSync(join(ca, 'cluster.crt'), join(empty, 'cluster.crt'));
    const noKey = await runMusterCa(['create-node-certificate', '--key-type', 'p256'], empty);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toContain(
      `error: unable to load certificate authority file: ${join(empty, 'cluster.key')} does not exist\nhint: run 'muster-ca initialize <name>'`,
    );
    expect(readdirSync(empty)).toEqual(['cluster.crt']);
  });

  it('a user or host name that would leave the folder, or is empty: a usage error (exit 2)', async () => {
    const work = folder('escape/work');
    copyFileSync(join(ca, 'cluster.crt'), join(work, 'cluster.crt'));
    copyFileSync(join(ca, 'cluster.key'), join(work, 'cluster.key'));
    const before = snapshot(work);
    const cases: [string[], RegExp][] = [
      [['create-api-certificate', '../x'], /^error: the user name '\.\.\/x' would write outside the output folder\nhint: /],
      [['create-api-certificate', '/etc/x'], /^error: the user name '\/etc\/x' would write outside the output folder\nhint: /],
      [['create-api-certificate', '..'], /^error: the user name '\.\.' would write outside the output folder\nhint: /],
      [['create-api-certificate', ''], /^error: the user name is empty\nhint: /],
      [['create-control-certificate', '../x'], /^error: '\.\.\/x' is not a DNS name or an IP address\nhint: /],
      [['create-control-certificate', '/etc/x'], /^error: '\/etc\/x' is not a DNS name or an IP address\nhint: /],
      [['create-control-certificate', ''], /^error: the host name is empty\nhint: /],
      [['initialize', ''], /^error: the cluster name is empty\nhint: /],
    ];
    for (const [argv, message] of cases) {
      const run = await runMusterCa([...argv, '--key-type', 'p256'], work);
      expect([run.code, run.stdout], argv.join(' ')).toEqual([2, '']);
      expect(run.stderr).toMatch(message);
    }
    expect(snapshot(work)).toEqual(before);
    expect(readdirSync(scratch.path('escape'))).toEqual(['work']);
    for (const file of ['/etc/x.crt', '/etc/x.key', '/etc/control-x.crt']) expect(existsSync(file), file).toBe(false);
  });

  it('a cluster.crt that is not a root, a key that does not match, an output folder that does not exist', async () => {
    const notRoot = folder('not-root');
    copyFileSync(join(ca, 'alice.crt'), join(notRoot, 'cluster.crt'));
    copyFileSync(join(ca, 'alice.key'), join(notRoot, 'cluster.key'));
    const leafAsRoot = await runMusterCa(['create-node-certificate', '--key-type', 'p256'], notRoot);
    expect([leafAsRoot.code, leafAsRoot.stderr]).toEqual([2, 'error: cluster.crt is not a CA certificate (basicConstraints CA:TRUE is missing)\n']);
    const mismatch = folder('mismatch');
    copyFileSync(join(ca, 'cluster.crt'), join(mismatch, 'cluster.crt'));
    copyFileSync(join(ca, 'alice.key'), join(mismatch, 'cluster.key'));
    const wrongKey = await runMusterCa(['create-node-certificate', '--key-type', 'p256'], mismatch);
    expect([wrongKey.code, wrongKey.stderr]).toEqual([2, 'error: cluster.key does not match cluster.crt\n']);
    const nowhere = await runMusterCa(['create-api-certificate', 'gina', '-o', 'nope', '--key-type', 'p256'], ca);
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr).toBe(`error: the output folder ${join(ca, 'nope')} does not exist\nhint: create it first: mkdir -m 0700 ${join(ca, 'nope')}\n`);
    expect(readdirSync(notRoot).sort()).toEqual(['cluster.crt', 'cluster.key']);
    expect(readdirSync(mismatch).sort()).toEqual(['cluster.crt', 'cluster.key']);
    expect(existsSync(join(ca, 'gina.crt'))).toBe(false);
  });
});
