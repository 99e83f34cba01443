import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { OID, bits, oid, seq, tlv, NULL, TAG } from '../../src/pki/der.js';
import { KEY_POLICY, checkKeyPolicy } from '../../src/pki/keys.js';
import { readPolicyKey } from '../../src/pki/spki.js';
import { parseCsr } from '../../src/pki/csr.js';
import { RSA_8192_CSR } from '../helpers/openssl.js';

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
      ['rsa', { modulusLength: 3072 }],
      ['rsa', { modulusLength: 4096 }],
    ] as const) {
      const { publicKey } = generateKeyPairSync(type as 'ec', options as { namedCurve: string });
      const spki = publicKey.export({ type: 'spki', format: 'der' });
      expect(readPolicyKey(spki, codes).kind).toBe(checkKeyPolicy(publicKey, codes));
    }
    // 8192: a real key, from a CSR made once (generating one takes up to a minute).
    const rsa8192 = parseCsr(readFileSync(RSA_8192_CSR, 'utf8')).publicKey;
    expect(rsa8192.asymmetricKeyDetails?.modulusLength).toBe(8192);
    expect(readPolicyKey(rsa8192.export({ type: 'spki', format: 'der' }), codes).kind).toBe('rsa');
    expect(checkKeyPolicy(rsa8192, codes)).toBe('rsa');
  }, 120_000); // RSA-3072 and -4096 keys are generated here: seconds on a busy machine

  it.each([2048, 3072, 4096, 8192])('accepts an RSA modulus of exactly %i bits with exponent 65537 (built from bytes)', (modulusBits) => {
    expect(readPolicyKey(rsaSpki(modulusBits, Buffer.from([1, 0, 1])), codes).kind).toBe('rsa');
  });

  it('refuses 8200 bits (the first size a byte past 8192) and 2040 bits, at the edges of the policy', () => {
    expect(() => readPolicyKey(rsaSpki(8200, Buffer.from([1, 0, 1])), codes)).toThrow(/the RSA key has 8200 bits; at most 8192 are accepted/);
    expect(codeOf(() => readPolicyKey(rsaSpki(8200, Buffer.from([1, 0, 1])), codes))).toBe('CSR_UNSUPPORTED_KEY');
    expect(codeOf(() => readPolicyKey(rsaSpki(2040, Buffer.from([1, 0, 1])), codes))).toBe('CSR_WEAK_KEY');
  });

  it('refuses the exponent 2^32+1 (an odd exponent just past 32 bits)', () => {
    expect(() => readPolicyKey(rsaSpki(2048, Buffer.from([1, 0, 0, 0, 1])), codes)).toThrow(/exponent is over 2\^32; only 65537 is accepted/);
    expect(codeOf(() => readPolicyKey(rsaSpki(8192, Buffer.from([1, 0, 0, 0, 1])), codes))).toBe('CSR_UNSUPPORTED_KEY');
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
