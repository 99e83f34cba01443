import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { createRootCa, loadSigningCa } from '../../src/pki/ca.js';
import { createCsr, parseCsr } from '../../src/pki/csr.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { readPeerCertificate } from '../../src/pki/peer.js';

const HOUR = 3_600_000;
const clock = new FakeClock(Date.UTC(2026, 10, 22));
const ca = loadSigningCa(createRootCa({ clusterId: 'cluster1', clock, random: systemRandom }));
const foreign = loadSigningCa(createRootCa({ clusterId: 'cluster1', clock, random: systemRandom }));
const csr = parseCsr(createCsr({ privateKey: generateNodeKeySync().privateKey }));
const issued = issueCertificate({ ca, csr, role: 'manager', commonName: 'node1', clusterId: 'cluster1', validityMs: 2 * HOUR, clock, random: systemRandom });

describe('readPeerCertificate', () => {
  it('returns the identity of a certificate that chains to the root', () => {
    const identity = readPeerCertificate({ cert: issued.certPem, roots: [ca.cert], now: clock.now() });
    expect(identity).toEqual({
      nodeId: 'node1',
      role: 'manager',
      clusterId: 'cluster1',
      serial: issued.serial,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
    });
  });

  it('accepts DER and X509Certificate input', () => {
    const x = new X509Certificate(issued.certPem);
    expect(readPeerCertificate({ cert: x, roots: [ca.cert], now: clock.now() }).nodeId).toBe('node1');
    expect(readPeerCertificate({ cert: x.raw, roots: [ca.cert], now: clock.now() }).nodeId).toBe('node1');
  });

  it.each([
    ['a certificate from another root with the same names', () => ({ cert: issued.certPem, roots: [foreign.cert], now: clock.now() }), 'CERT_UNTRUSTED'],
    ['an expired certificate', () => ({ cert: issued.certPem, roots: [ca.cert], now: issued.notAfter + 1000 }), 'CERT_EXPIRED'],
    ['a certificate before NotBefore', () => ({ cert: issued.certPem, roots: [ca.cert], now: issued.notBefore - 1000 }), 'CERT_NOT_YET_VALID'],
    ['junk bytes', () => ({ cert: Buffer.from('junk'), roots: [ca.cert], now: clock.now() }), 'CERT_INVALID'],
  ])('refuses %s', (_name, make, code) => {
    expect(() => readPeerCertificate(make())).toThrow(expect.objectContaining({ code }));
  });

  it('reports an unknown OU as no role', () => {
    const root = ca.cert;
    const identity = readPeerCertificate({ cert: root, roots: [root], now: clock.now() });
    expect(identity.role).toBeUndefined();
    expect(identity.nodeId).toBe('swarm-ca');
  });
});
