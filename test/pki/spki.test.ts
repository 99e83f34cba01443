import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { OID, bits, oid, seq, tlv, NULL, TAG } from '../../src/pki/der.js';
import { KEY_POLICY, checkKeyPolicy } from '../../src/pki/keys.js';
import { readPolicyKey } from '../../src/pki/spki.js';

const codes = { weak: 'CSR_WEAK_KEY', unsupported: 'CSR_UNSUPPORTED_KEY', malformed: () => new MusterError('CSR_MALFORMED') } as const;

/** An RSA SPKI with the given modulus size and exponent, built from bytes (no key generation needed). */
function rsaSpki(modulusBits: number, exponent: Buffer): Buffer {
  const modulus = Buffer.alloc(modulusBits / 8, 0xab);
  modulus[0] = 0xc1;
  const int = (bytes: Buffer): Buffer => tlv(TAG.INTEGER, bytes[0]! & 0x80 ? Buffer.concat([Buffer.of(0), bytes]) : bytes);
  return seq(seq(oid(OID.rsaEncryption), NULL), bits(seq(int(modulus), int(exponent))));
}

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (error) {
    return (error as MusterError).code;
  }
};

describe('the key policy', () => {
  it('accepts P-256, P-384 and RSA 2048–8192 with exponent 65537, from the SPKI and from a key object alike', () => {
    for (const [type, options] of [
      ['ec', { namedCurve: 'P-256' }],
      ['ec', { namedCurve: 'P-384' }],
      ['rsa', { modulusLength: 2048 }],
    ] as const) {
      const { publicKey } = generateKeyPairSync(type as 'ec', options as { namedCurve: string });
      const spki = publicKey.export({ type: 'spki', format: 'der' });
      expect(readPolicyKey(spki, codes).kind).toBe(checkKeyPolicy(publicKey, codes));
    }
  });

  it('refuses an RSA key above 8192 bits before OpenSSL reads it', () => {
    expect(codeOf(() => readPolicyKey(rsaSpki(16384, Buffer.from([1, 0, 1])), codes))).toBe('CSR_UNSUPPORTED_KEY');
    expect(KEY_POLICY.rsa.maxBits).toBe(8192);
  });

  it('refuses a huge public exponent (a 3,070-bit exponent costs milliseconds per use)', () => {
    const huge = Buffer.alloc(384, 0xff);
    huge[383] = 0xff;
    expect(codeOf(() => readPolicyKey(rsaSpki(3072, huge), codes))).toBe('CSR_UNSUPPORTED_KEY');
    expect(codeOf(() => readPolicyKey(rsaSpki(3072, Buffer.from([0x01, 0x00, 0x00, 0x00, 0x02])), codes))).toBe('CSR_UNSUPPORTED_KEY'); // 2^32+2
    expect(codeOf(() => readPolicyKey(rsaSpki(3072, Buffer.from([1])), codes))).toBe('CSR_UNSUPPORTED_KEY'); // e = 1
  });

  it('takes the exponent 65537 only (the README says so): 3, 17 and 65539 are refused with a message naming it', () => {
    for (const exponent of [[3], [17], [1, 0, 3]]) {
      expect(codeOf(() => readPolicyKey(rsaSpki(2048, Buffer.from(exponent)), codes))).toBe('CSR_UNSUPPORTED_KEY');
    }
    expect(() => readPolicyKey(rsaSpki(2048, Buffer.from([3])), codes)).toThrow(/exponent is 3; only 65537 is accepted/);
    const e3 = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).publicKey;
    expect(codeOf(() => checkKeyPolicy(e3, codes))).toBe('CSR_UNSUPPORTED_KEY');
    expect(KEY_POLICY.rsa.exponent).toBe(65537n);
  });

  it('calls an RSA key below 2048 bits weak, and other algorithms unsupported', () => {
    expect(codeOf(() => readPolicyKey(rsaSpki(1024, Buffer.from([1, 0, 1])), codes))).toBe('CSR_WEAK_KEY');
    const { publicKey } = generateKeyPairSync('ed25519');
    expect(codeOf(() => readPolicyKey(publicKey.export({ type: 'spki', format: 'der' }), codes))).toBe('CSR_UNSUPPORTED_KEY');
    expect(codeOf(() => readPolicyKey(Buffer.from('junk'), codes))).toBe('CSR_MALFORMED');
  });
});
