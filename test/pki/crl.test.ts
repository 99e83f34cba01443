import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { createRootCa, loadSigningCa, type SigningCa } from '../../src/pki/ca.js';
import { CRL_PEM_LABEL, CrlError, buildCrl, parseCrl, type CrlEntry } from '../../src/pki/crl.js';
import { createCsr, parseCsr } from '../../src/pki/csr.js';
import { DerNode, seq, toPem } from '../../src/pki/der.js';
import { issueCertificate, type IssuedCertificate } from '../../src/pki/issue.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { openssl, opensslStatus, scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
// openssl -crl_check judges CRL times by the wall clock, so this fake clock starts at the real time.
const clock = new FakeClock(Math.floor(Date.now() / 1000) * 1000);
const clusterId = 'k3v9q0c1z8m2x7b4n6l5j0h1g';
let ca: SigningCa;
let rootFile: string;

beforeAll(() => {
  ca = loadSigningCa(createRootCa({ clusterId, clock, random: systemRandom }));
  rootFile = scratch.write('root.pem', ca.certPem);
});

function issueLeaf(): IssuedCertificate {
  return issueCertificate({
    ca,
    csr: parseCsr(createCsr({ privateKey: generateNodeKeySync().privateKey })),
    role: 'worker',
    commonName: `node-${Math.random().toString(36).slice(2)}`,
    clusterId,
    validityMs: 90 * DAY,
    clock,
    random: systemRandom,
  });
}

function crlFor(entries: CrlEntry[], overrides: { number?: number; signer?: SigningCa } = {}): Buffer {
  return buildCrl({ ca: overrides.signer ?? ca, number: overrides.number ?? 7, thisUpdate: clock.now(), nextUpdate: clock.now() + DAY, entries });
}

let fileCount = 0;
function writeFile(ext: string, data: string | Buffer): string {
  return scratch.write(`f${fileCount++}.${ext}`, data);
}

/** Which byte-flip stays inside the signed part but leaves the DER well-formed: the last byte of a serial. */
function flipSerialByte(der: Buffer, serialHex: string): Buffer {
  const at = der.indexOf(Buffer.from(serialHex, 'hex'));
  expect(at).toBeGreaterThan(0);
  const out = Buffer.from(der);
  const last = at + serialHex.length / 2 - 1;
  out[last] = out[last]! ^ 0x01;
  return out;
}

describe('buildCrl, read back by openssl', () => {
  it('signs a v2 CRL with two entries that openssl verifies and prints', () => {
    const a = issueLeaf();
    const b = issueLeaf();
    const der = crlFor(
      [
        { serial: a.serial, revokedAt: clock.now() - HOUR, reason: 'keyCompromise' },
        { serial: b.serial, revokedAt: clock.now() - 2 * HOUR, reason: 'cessationOfOperation' },
      ],
      { number: 42 },
    );
    const file = writeFile('der', der);
    const verified = opensslStatus(['crl', '-inform', 'DER', '-in', file, '-CAfile', rootFile, '-noout', '-verify']);
    expect(verified.status).toBe(0);
    expect(verified.output).toMatch(/verify OK/);
    const text = openssl(['crl', '-inform', 'DER', '-in', file, '-noout', '-text']);
    expect(text).toMatch(/Version 2 \(0x1\)/);
    expect(text).toMatch(/X509v3 CRL Number: \n\s+42\n/);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
    expect(text).toContain(`Serial Number: ${a.serial}`);
    expect(text).toContain(`Serial Number: ${b.serial}`);
    expect(text).toMatch(/X509v3 CRL Reason Code: \n\s+Key Compromise\n/);
    expect(text).toMatch(/X509v3 CRL Reason Code: \n\s+Cessation Of Operation\n/);
    expect(text).toMatch(/Last Update: .+\n/);
    expect(text).toMatch(/Next Update: .+\n/);
    expect(text).toMatch(new RegExp(`Issuer: O = ${clusterId}, CN = swarm-ca\\n`));
  });

  it('makes openssl verify -crl_check refuse a listed leaf and accept an unlisted one', () => {
    const revoked = issueLeaf();
    const fine = issueLeaf();
    const crlFile = writeFile('pem', toPem(crlFor([{ serial: revoked.serial, revokedAt: clock.now(), reason: 'superseded' }]), CRL_PEM_LABEL));
    const check = (leaf: IssuedCertificate) =>
      opensslStatus(['verify', '-crl_check', '-CAfile', rootFile, '-CRLfile', crlFile, writeFile('pem', leaf.certPem)]);
    const refused = check(revoked);
    expect(refused.status).not.toBe(0);
    expect(refused.output).toMatch(/certificate revoked/);
    const accepted = check(fine);
    expect(accepted.status).toBe(0);
    expect(accepted.output).toMatch(/: OK\n/);
  });

  it('leaves revokedCertificates out of an empty CRL, which openssl verifies and muster parses', () => {
    const der = crlFor([], { number: 0 });
    const verified = opensslStatus(['crl', '-inform', 'DER', '-in', writeFile('der', der), '-CAfile', rootFile, '-noout', '-verify']);
    expect(verified.status).toBe(0);
    expect(verified.output).toMatch(/verify OK/);
    expect(openssl(['crl', '-inform', 'DER', '-in', writeFile('der', der), '-noout', '-text'])).toMatch(/No Revoked Certificates/);
    const parsed = parseCrl(der, ca.cert);
    expect(parsed.serials.size).toBe(0);
    expect(parsed.entries).toEqual([]);
    expect(parsed.number).toBe(0);
  });

  it('refuses bad serials, a serial listed twice and a negative CRL number', () => {
    expect(() => crlFor([{ serial: 'XYZ', revokedAt: 0, reason: 'superseded' }])).toThrow(/hex/);
    const twice: CrlEntry = { serial: '1A2B', revokedAt: 0, reason: 'superseded' };
    expect(() => crlFor([twice, { ...twice, serial: '001A2B' }])).toThrow(/twice/);
    expect(() => crlFor([], { number: -1 })).toThrow(/non-negative/);
  });
});

describe('parseCrl', () => {
  it('round-trips number, times, serials and reasons from DER, PEM text and PEM bytes', () => {
    const thisUpdate = Date.UTC(2030, 5, 1, 12, 0, 0, 999);
    const nextUpdate = Date.UTC(2051, 0, 2, 3, 4, 5); // GeneralizedTime from 2050 on
    const entries: CrlEntry[] = [
      { serial: '5F00AA', revokedAt: Date.UTC(2030, 4, 1, 0, 0, 1, 500), reason: 'privilegeWithdrawn' },
      { serial: '10', revokedAt: Date.UTC(2029, 0, 1), reason: 'unspecified' },
      { serial: '3C', revokedAt: Date.UTC(2029, 0, 2), reason: 'affiliationChanged' },
      { serial: '0F', revokedAt: Date.UTC(2029, 0, 3), reason: 'keyCompromise' },
    ];
    const der = buildCrl({ ca, number: 2 ** 40 + 3, thisUpdate, nextUpdate, entries });
    for (const input of [der, toPem(der, CRL_PEM_LABEL), Buffer.from(toPem(der, CRL_PEM_LABEL))]) {
      const parsed = parseCrl(input, ca.cert);
      expect(parsed.number).toBe(2 ** 40 + 3);
      expect(parsed.thisUpdate).toBe(Date.UTC(2030, 5, 1, 12, 0, 0));
      expect(parsed.nextUpdate).toBe(nextUpdate);
      expect([...parsed.serials]).toEqual(['0F', '10', '3C', '5F00AA']); // sorted by value
      expect(parsed.entries).toEqual([
        { serial: '0F', revokedAt: Date.UTC(2029, 0, 3), reason: 'keyCompromise' },
        { serial: '10', revokedAt: Date.UTC(2029, 0, 1), reason: 'unspecified' },
        { serial: '3C', revokedAt: Date.UTC(2029, 0, 2), reason: 'affiliationChanged' },
        { serial: '5F00AA', revokedAt: Date.UTC(2030, 4, 1, 0, 0, 1), reason: 'privilegeWithdrawn' },
      ]);
      expect(parsed.issuerDer.equals(ca.subjectDer)).toBe(true);
    }
  });

  it('round-trips a serial whose top bit is set (INTEGER gains a 0x00, parsing drops it)', () => {
    const serial = `8A${'C3'.repeat(19)}`;
    const der = crlFor([{ serial, revokedAt: clock.now(), reason: 'keyCompromise' }]);
    expect(der.includes(Buffer.from(`00${serial}`, 'hex'))).toBe(true);
    expect([...parseCrl(der, ca.cert).serials]).toEqual([serial]);
    expect(openssl(['crl', '-inform', 'DER', '-in', writeFile('der', der), '-noout', '-text'])).toContain(`Serial Number: ${serial}`);
  });

  it('matches serials as issued certificates report them', () => {
    const leaf = issueLeaf();
    const parsed = parseCrl(crlFor([{ serial: leaf.serial, revokedAt: clock.now(), reason: 'superseded' }]), ca.cert);
    expect(parsed.serials.has(leaf.serial)).toBe(true);
  });

  it('refuses a CRL from another root with the same name (signature) or another name (issuer)', () => {
    const twin = loadSigningCa(createRootCa({ clusterId, clock, random: systemRandom }));
    expect(twin.subjectDer.equals(ca.subjectDer)).toBe(true);
    expect(() => parseCrl(crlFor([], { signer: twin }), ca.cert)).toThrow(/signature does not verify/);
    const other = loadSigningCa(createRootCa({ clusterId: 'zzzzzzzzzzzzzzzzzzzzzzzzz', clock, random: systemRandom }));
    expect(() => parseCrl(crlFor([], { signer: other }), ca.cert)).toThrow(/issuer/);
    expect(parseCrl(crlFor([], { signer: other }), other.cert).number).toBe(7);
  });

  it('refuses a CRL with one byte of the signed part flipped', () => {
    const serial = '1122334455';
    const der = crlFor([{ serial, revokedAt: clock.now(), reason: 'keyCompromise' }]);
    expect(parseCrl(der, ca.cert).serials.has(serial)).toBe(true);
    expect(() => parseCrl(flipSerialByte(der, serial), ca.cert)).toThrow(/signature does not verify/);
  });

  it('refuses garbage, truncated input, trailing bytes and a CERTIFICATE PEM, always as CrlError', () => {
    const der = crlFor([{ serial: '42', revokedAt: clock.now(), reason: 'keyCompromise' }]);
    const bad: (Buffer | string)[] = [
      Buffer.from('not a crl'),
      Buffer.alloc(0),
      systemRandom.bytes(200),
      der.subarray(0, der.length - 10),
      der.subarray(0, 40),
      Buffer.concat([der, Buffer.of(0)]),
      'no PEM here',
      ca.certPem,
      toPem(der, CRL_PEM_LABEL) + toPem(der, CRL_PEM_LABEL),
    ];
    for (const input of bad) expect(() => parseCrl(input, ca.cert)).toThrow(CrlError);
    expect(() => parseCrl(ca.certPem, ca.cert)).toThrow(/expected an X509 CRL PEM block, got CERTIFICATE/);
    expect(() => parseCrl(ca.cert.raw, ca.cert)).toThrow(CrlError);
  });

  it('refuses a v1 CRL and a CRL whose outer algorithm differs from the signed one', () => {
    expect(() => parseCrl(v1Crl(), ca.cert)).toThrow(/not version 2/);
    const der = crlFor([]);
    // Swap the outer ecdsa-with-SHA256 for ecdsa-with-SHA384: same length, so only that byte differs.
    const sha256 = Buffer.from('06082a8648ce3d040302', 'hex');
    const outer = der.lastIndexOf(sha256);
    expect(outer).toBeGreaterThan(der.indexOf(sha256));
    const swapped = Buffer.from(der);
    swapped[outer + sha256.length - 1] = 0x03;
    expect(() => parseCrl(swapped, ca.cert)).toThrow(/differs inside and outside/);
  });
});

/** A CRL in the v1 shape: muster's TBS with its version INTEGER cut out (the signature no longer matters: the version is checked first). */
function v1Crl(): Buffer {
  const list = DerNode.parse(crlFor([]), (why) => new Error(why));
  const [tbs, algorithm, signature] = list.children();
  const tbsFields = tbs!
    .children()
    .slice(1)
    .map((f) => f.bytes);
  return seq(seq(...tbsFields), algorithm!.bytes, signature!.bytes);
}
