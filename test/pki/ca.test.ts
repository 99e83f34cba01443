import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock, systemClock } from '../../src/core/clock.js';
import { MusterError } from '../../src/core/errors.js';
import { seededRandom, systemRandom } from '../../src/core/random.js';
import { ROOT_COMMON_NAME, createRootCa, importRootCa, loadSigningCa, rootDigest } from '../../src/pki/ca.js';
import { opensslFixtures, scratchDir, x509Text } from '../helpers/openssl.js';

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

describe('createRootCa', () => {
  const clock = new FakeClock(Date.UTC(2026, 5, 1, 12, 0, 0));
  const root = createRootCa({ clusterId: 'c0ffee', clock, random: seededRandom('root') });
  const cert = new X509Certificate(root.certPem);

  it('writes the DESIGN §2 root fields, as openssl reads them', () => {
    const text = x509Text(root.certPem);
    expect(text).toMatch(/Subject: O = c0ffee, CN = swarm-ca/);
    expect(text).toMatch(/Issuer: O = c0ffee, CN = swarm-ca/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toMatch(/X509v3 Subject Key Identifier/);
    expect(text).toMatch(/ecdsa-with-SHA256/);
    expect(text).toMatch(/ASN1 OID: prime256v1/);
    expect(ROOT_COMMON_NAME).toBe('swarm-ca');
  });

  it('is backdated an hour, as node certificates are (a node whose clock is behind can still join), and valid for 20 years from the injected clock', () => {
    expect(Date.parse(cert.validFrom)).toBe(clock.now() - 60 * 60_000);
    expect(Date.parse(cert.validTo)).toBe(clock.now() + 20 * 365 * 86_400_000);
  });

  it('is self-signed, CA:TRUE, and has a positive serial of at most 20 bytes', () => {
    expect(cert.ca).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.serialNumber.length).toBeLessThanOrEqual(40);
    expect(Number.parseInt(cert.serialNumber.slice(0, 2), 16)).toBeLessThan(0x80);
  });

  it('uses the random source for its serial', () => {
    const other = createRootCa({ clusterId: 'c0ffee', clock, random: seededRandom('other') });
    expect(new X509Certificate(other.certPem).serialNumber).not.toBe(cert.serialNumber);
  });

  it('digests the exact PEM bytes', () => {
    expect(rootDigest(root.certPem).toString('hex')).toHaveLength(64);
    expect(rootDigest(root.certPem).equals(rootDigest(Buffer.from(root.certPem)))).toBe(true);
    expect(rootDigest(root.certPem).equals(rootDigest(root.certPem.replace(/\n$/, '')))).toBe(false);
  });

  it('loads back into a signer whose key ID is the root SKI', () => {
    const ca = loadSigningCa(root);
    const skiHex = x509Text(root.certPem)
      .match(/Subject Key Identifier:\s+([0-9A-F:]+)/)?.[1]
      ?.replaceAll(':', '');
    expect(ca.keyId.toString('hex').toUpperCase()).toBe(skiHex);
    expect(ca.notAfter).toBe(Date.parse(cert.validTo));
  });
});

describe('importRootCa', () => {
  let fx: ReturnType<typeof opensslFixtures>;
  const keys: Record<string, string> = {};
  beforeAll(() => {
    fx = opensslFixtures(scratch);
    keys.rsa = fx.key('rsa:2048');
    keys.p256 = fx.key('ec:P-256');
    keys.p384 = fx.key('ec:P-384');
    keys.rsa1024 = fx.key('rsa:1024');
    keys.ed25519 = fx.key('ed25519');
    keys.other = fx.key('ec:P-256');
  });

  it.each([['rsa'], ['p256'], ['p384']])('accepts an openssl-made %s root', (kind) => {
    const keyFile = keys[kind]!;
    const certPem = fx.selfSigned(keyFile, { ca: true, days: 3650 });
    const ca = importRootCa({ certPem, keyPem: fx.read(keyFile) }, systemClock);
    expect(ca.certPem).toBe(certPem);
    expect(ca.algorithm.hash).toBe(kind === 'p384' ? 'sha384' : 'sha256');
  });

  it('keeps the bundle bytes verbatim', () => {
    const certPem = fx.selfSigned(keys.p256!, { ca: true, days: 3650 });
    expect(importRootCa({ certPem, keyPem: fx.read(keys.p256!) }, systemClock).certPem).toBe(certPem);
  });

  const root = (): { certPem: string; keyPem: string } => ({
    certPem: fx.selfSigned(keys.p256!, { ca: true, days: 3650 }),
    keyPem: fx.read(keys.p256!),
  });

  const cases: [string, () => { certPem: string; keyPem: string }, string][] = [
    ['a certificate that is not PEM', () => ({ ...root(), certPem: 'hello' }), 'CA_CERT_INVALID'],
    ['a PEM block that is not a certificate', () => ({ ...root(), certPem: fx.csr(keys.p256!) }), 'CA_CERT_INVALID'],
    [
      'two certificates in one bundle',
      () => {
        const r = root();
        return { ...r, certPem: r.certPem + r.certPem };
      },
      'CA_CERT_INVALID',
    ],
    [
      'a certificate with corrupted DER',
      () => {
        const r = root();
        return { ...r, certPem: r.certPem.replace(/\n[A-Za-z0-9+/]{10}/, '\nAAAAAAAAAA') };
      },
      'CA_CERT_INVALID',
    ],
    ['a leaf certificate (CA:FALSE)', () => ({ certPem: fx.selfSigned(keys.p256!, { ca: false, days: 3650 }), keyPem: fx.read(keys.p256!) }), 'CA_NOT_CA'],
    [
      'an intermediate (not self-signed)',
      () => {
        const r = root();
        return { certPem: fx.intermediate(keys.other!, r.certPem, keys.p256!), keyPem: fx.read(keys.other!) };
      },
      'CA_NOT_SELF_SIGNED',
    ],
    ['a root expiring in 30 days', () => ({ certPem: fx.selfSigned(keys.p256!, { ca: true, days: 30 }), keyPem: fx.read(keys.p256!) }), 'CA_EXPIRES_SOON'],
    ['a key that does not match', () => ({ ...root(), keyPem: fx.read(keys.other!) }), 'CA_KEY_MISMATCH'],
    ['a key that is not PEM', () => ({ ...root(), keyPem: 'not a key' }), 'CA_KEY_INVALID'],
    [
      'a public key where the private key belongs',
      () => ({ ...root(), keyPem: new X509Certificate(root().certPem).publicKey.export({ type: 'spki', format: 'pem' }).toString() }),
      'CA_KEY_INVALID',
    ],
    ['an RSA-1024 root', () => ({ certPem: fx.selfSigned(keys.rsa1024!, { ca: true, days: 3650 }), keyPem: fx.read(keys.rsa1024!) }), 'CA_UNSUPPORTED_KEY'],
    ['an Ed25519 root', () => ({ certPem: fx.selfSigned(keys.ed25519!, { ca: true, days: 3650 }), keyPem: fx.read(keys.ed25519!) }), 'CA_UNSUPPORTED_KEY'],
  ];

  it.each(cases)('refuses %s', (_name, make, code) => {
    const material = make();
    let caught: unknown;
    try {
      importRootCa(material, systemClock);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(MusterError);
    expect((caught as MusterError).code).toBe(code);
  });

  it('refuses a founded root once it is within a year of expiry', () => {
    const clock = new FakeClock(Date.UTC(2026, 0, 1));
    const material = createRootCa({ clusterId: 'x', clock, random: systemRandom });
    expect(() => importRootCa(material, clock)).not.toThrow();
    clock.set(Date.UTC(2045, 6, 1));
    expect(() => importRootCa(material, clock)).toThrow(expect.objectContaining({ code: 'CA_EXPIRES_SOON' }));
  });
});
