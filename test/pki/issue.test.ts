import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/core/clock.js';
import { seededRandom, systemRandom } from '../../src/core/random.js';
import { createRootCa, importRootCa, loadSigningCa, type SigningCa } from '../../src/pki/ca.js';
import { createCsr, parseCsr } from '../../src/pki/csr.js';
import { LEAF_BACKDATE_MS, issueCertificate, type IssueRequest } from '../../src/pki/issue.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { opensslFixtures, opensslStatus, scratchDir, x509Text } from '../helpers/openssl.js';

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

const HOUR = 3_600_000;
const clock = new FakeClock(Date.UTC(2026, 10, 22, 12, 0, 0));
const clusterId = 'k3v9q0c1z8m2x7b4n6l5j0h1g';
const nodeId = 'a1b2c3d4e5f6g7h8i9j0k1l2m';
let ca: SigningCa;
let rootFile: string;

beforeAll(() => {
  ca = loadSigningCa(createRootCa({ clusterId, clock, random: systemRandom }));
  rootFile = scratch.write('root.pem', ca.certPem);
});

function issue(overrides: Partial<IssueRequest> & { csrPem?: string } = {}) {
  const csrPem = overrides.csrPem ?? createCsr({ privateKey: generateNodeKeySync().privateKey });
  return issueCertificate({
    ca,
    csr: parseCsr(csrPem),
    role: 'worker',
    commonName: nodeId,
    clusterId,
    validityMs: 90 * 24 * HOUR,
    clock,
    random: systemRandom,
    ...overrides,
  });
}

function verifyWithOpenssl(certPem: string, root = rootFile): { status: number; output: string } {
  const file = scratch.write(`leaf-${Math.random().toString(36).slice(2)}.pem`, certPem);
  return opensslStatus(['verify', '-CAfile', root, file]);
}

describe('issueCertificate profiles, read back by openssl', () => {
  it('worker: subject, SANs, key usage, EKU, basic constraints', () => {
    const { certPem } = issue();
    expect(verifyWithOpenssl(certPem).status).toBe(0);
    const text = x509Text(certPem);
    expect(text).toMatch(new RegExp(`Subject: O = ${clusterId}, OU = swarm-worker, CN = ${nodeId}\\n`));
    expect(text).toMatch(new RegExp(`Issuer: O = ${clusterId}, CN = swarm-ca\\n`));
    expect(text).toMatch(new RegExp(`X509v3 Subject Alternative Name: \\n\\s+DNS:swarm-worker, DNS:${nodeId}\\n`));
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Digital Signature\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Server Authentication, TLS Web Client Authentication\n/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE\n/);
    expect(text).toMatch(/X509v3 Subject Key Identifier/);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
  });

  it('manager: swarm-ca and the advertise host (IP and DNS) in the SANs, usable as a TLS server for that address', () => {
    const { certPem } = issue({ role: 'manager', hosts: ['192.0.2.7', 'mgr.example.com', '::1'] });
    expect(verifyWithOpenssl(certPem).status).toBe(0);
    const text = x509Text(certPem);
    expect(text).toMatch(/OU = swarm-manager/);
    expect(text).toMatch(new RegExp(`DNS:swarm-manager, DNS:${nodeId}, DNS:swarm-ca, IP Address:192.0.2.7, DNS:mgr.example.com, IP Address:0:0:0:0:0:0:0:1`));
    const x = new X509Certificate(certPem);
    expect(x.checkIP('192.0.2.7')).toBe('192.0.2.7');
    expect(x.checkHost('mgr.example.com')).toBe('mgr.example.com');
    const file = scratch.write('mgr.pem', certPem);
    expect(opensslStatus(['verify', '-CAfile', rootFile, '-purpose', 'sslserver', '-verify_ip', '192.0.2.7', file]).status).toBe(0);
  });

  it('admin: OU=swarm-admin, clientAuth only, never a TLS server', () => {
    const { certPem } = issue({ role: 'admin', commonName: 'alice' });
    const text = x509Text(certPem);
    expect(text).toMatch(new RegExp(`Subject: O = ${clusterId}, OU = swarm-admin, CN = alice\\n`));
    expect(text).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Client Authentication\n/);
    expect(text).toMatch(/X509v3 Subject Alternative Name: \n\s+DNS:alice\n/); // strict verifiers want a SAN
    const file = scratch.write('alice.pem', certPem);
    expect(opensslStatus(['verify', '-CAfile', rootFile, '-purpose', 'sslclient', file]).status).toBe(0);
    expect(opensslStatus(['verify', '-CAfile', rootFile, '-purpose', 'sslserver', file]).status).not.toBe(0);
  });

  it('adds keyEncipherment for RSA keys', () => {
    const fx = opensslFixtures(scratch);
    const { certPem } = issue({ csrPem: fx.csr(fx.key('rsa:2048')) });
    expect(verifyWithOpenssl(certPem).status).toBe(0);
    expect(x509Text(certPem)).toMatch(/Digital Signature, Key Encipherment/);
  });

  it('takes only the key from a CSR asking for CN=evil, OU=swarm-manager', () => {
    const key = generateNodeKeySync();
    const evil = createCsr({ privateKey: key.privateKey, subject: { commonName: 'evil', organizationalUnit: 'swarm-manager', organization: 'other' } });
    const { certPem } = issue({ csrPem: evil });
    const text = x509Text(certPem);
    expect(text).not.toMatch(/evil|other/);
    expect(text).toMatch(new RegExp(`Subject: O = ${clusterId}, OU = swarm-worker, CN = ${nodeId}\\n`));
    expect(new X509Certificate(certPem).checkPrivateKey(key.privateKey)).toBe(true);
  });

  it('openssl-made CSRs with hostile subjects and extensions get the manager-chosen subject only', () => {
    const fx = opensslFixtures(scratch);
    const csr = fx.csr(fx.key('ec:P-256'), { subject: '/CN=evil/OU=swarm-manager/O=elsewhere' });
    const text = x509Text(issue({ csrPem: csr }).certPem);
    expect(text).toMatch(/OU = swarm-worker/);
    expect(text).not.toMatch(/evil|elsewhere/);
  });
});

describe('validity and serials', () => {
  it('backdates NotBefore one hour and sets NotAfter from the injected clock', () => {
    const issued = issue({ validityMs: 2 * HOUR });
    const x = new X509Certificate(issued.certPem);
    expect(Date.parse(x.validFrom)).toBe(clock.now() - LEAF_BACKDATE_MS);
    expect(Date.parse(x.validTo)).toBe(clock.now() + 2 * HOUR);
    expect(issued.notAfter).toBe(Date.parse(x.validTo));
  });

  it('never outlives the root', () => {
    const issued = issue({ validityMs: 100 * 365 * 24 * HOUR });
    expect(issued.notAfter).toBe(ca.notAfter);
  });

  it('draws serials from the random source and reports them as Node prints them', () => {
    const a = issue({ random: seededRandom(1) });
    const b = issue({ random: seededRandom(2) });
    expect(a.serial).not.toBe(b.serial);
    expect(new X509Certificate(a.certPem).serialNumber).toBe(a.serial);
  });

  it('passes Node checkIssued and verify', () => {
    const x = new X509Certificate(issue().certPem);
    expect(x.checkIssued(ca.cert)).toBe(true);
    expect(x.verify(ca.cert.publicKey)).toBe(true);
  });

  it('signs under an imported RSA root with openssl agreeing', () => {
    const fx = opensslFixtures(scratch);
    const rootKey = fx.key('rsa:2048');
    const rootPem = fx.selfSigned(rootKey, { ca: true, days: 3650, subject: '/C=DE/O=Corp Ltd/CN=Corp Root' });
    const corp = importRootCa({ certPem: rootPem, keyPem: fx.read(rootKey) }, { now: () => Date.now(), setTimer: () => ({ cancel() {} }) });
    const realNow = { now: () => Date.now(), setTimer: () => ({ cancel() {} }) };
    const issued = issueCertificate({
      ca: corp,
      csr: parseCsr(createCsr({ privateKey: generateNodeKeySync().privateKey })),
      role: 'manager',
      commonName: nodeId,
      clusterId,
      validityMs: HOUR,
      clock: realNow,
      random: systemRandom,
    });
    expect(verifyWithOpenssl(issued.certPem, scratch.write('corp.pem', rootPem)).status).toBe(0);
    expect(x509Text(issued.certPem)).toMatch(/Issuer: C = DE, O = Corp Ltd, CN = Corp Root/);
  });
});
