import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { MAX_CSR_BYTES, createCsr, parseCsr } from '../../src/pki/csr.js';
import { readPemBlocks, toPem } from '../../src/pki/der.js';
import { generateNodeKeySync, spkiDer } from '../../src/pki/keys.js';
import { opensslFixtures, opensslStatus, scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

/** Rewrites a PEM's DER with `edit` and re-armours it. */
function editDer(pem: string, edit: (der: Buffer) => Buffer): string {
  const block = readPemBlocks(pem)[0]!;
  return toPem(edit(Buffer.from(block.der)), block.label);
}

describe('createCsr', () => {
  it('makes CSRs that openssl req -verify accepts', () => {
    const key = generateNodeKeySync();
    const csr = createCsr({ privateKey: key.privateKey, subject: { commonName: 'n1' } });
    const file = scratch.write('mine.csr', csr);
    const result = opensslStatus(['req', '-in', file, '-verify', '-noout']);
    expect(result.output).toMatch(/verify OK/);
    expect(result.status).toBe(0);
  });

  it('round-trips the public key through parseCsr', () => {
    const key = generateNodeKeySync();
    const parsed = parseCsr(createCsr({ privateKey: key.privateKey }));
    expect(parsed.spki.equals(spkiDer(key.publicKey))).toBe(true);
    expect(parsed.keyKind).toBe('ec-p256');
  });

  it('signs with RSA and P-384 keys too', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    expect(parseCsr(createCsr({ privateKey: rsa })).keyKind).toBe('rsa');
    expect(parseCsr(createCsr({ privateKey: p384 })).keyKind).toBe('ec-p384');
  });
});

describe('parseCsr', () => {
  let fx: ReturnType<typeof opensslFixtures>;
  const keys: Record<string, string> = {};
  beforeAll(() => {
    fx = opensslFixtures(scratch);
    for (const spec of ['ec:P-256', 'ec:P-384', 'rsa:2048', 'rsa:4096', 'rsa:1024', 'rsa:2048:3', 'rsa:2048:17', 'ec:secp256k1', 'ec:P-521', 'ed25519']) keys[spec] = fx.key(spec);
  });

  it.each([['ec:P-256'], ['ec:P-384'], ['rsa:2048'], ['rsa:4096']])('accepts an openssl req CSR with a %s key', (spec) => {
    const parsed = parseCsr(fx.csr(keys[spec]!));
    expect(parsed.publicKey.asymmetricKeyType).toBe(spec.startsWith('rsa') ? 'rsa' : 'ec');
  });

  it('accepts SHA-384 and SHA-512 signatures', () => {
    expect(() => parseCsr(fx.csr(keys['ec:P-256']!, { digest: 'sha384' }))).not.toThrow();
    expect(() => parseCsr(fx.csr(keys['rsa:2048']!, { digest: 'sha512' }))).not.toThrow();
  });

  const valid = (): string => fx.csr(keys['ec:P-256']!);
  const cases: [string, () => unknown, string][] = [
    ['a number', () => 42, 'CSR_NOT_PEM'],
    ['an empty string', () => '', 'CSR_NOT_PEM'],
    ['plain text', () => 'please sign me', 'CSR_NOT_PEM'],
    ['bare base64 DER without armour', () => readPemBlocks(valid())[0]!.der.toString('base64'), 'CSR_NOT_PEM'],
    ['more than 16 KiB', () => valid() + ' '.repeat(MAX_CSR_BYTES), 'CSR_TOO_LARGE'],
    ['a certificate instead of a CSR', () => fx.selfSigned(keys['ec:P-256']!, { ca: false, days: 1 }), 'CSR_MALFORMED'],
    ['two CSR blocks', () => valid() + valid(), 'CSR_MALFORMED'],
    ['armoured garbage', () => '-----BEGIN CERTIFICATE REQUEST-----\nAAAAAAAA\n-----END CERTIFICATE REQUEST-----\n', 'CSR_MALFORMED'],
    ['a truncated request', () => editDer(valid(), (d) => d.subarray(0, d.length - 10)), 'CSR_MALFORMED'],
    ['trailing bytes', () => editDer(valid(), (d) => Buffer.concat([d, Buffer.of(0, 0)])), 'CSR_MALFORMED'],
    ['a flipped signature byte', () => editDer(valid(), (d) => { d[d.length - 3]! ^= 0x01; return d; }), 'CSR_BAD_SIGNATURE'],
    ['a tampered subject', () => editDer(valid(), (d) => { const i = d.indexOf(Buffer.from('node')); d[i] = 0x4e; return d; }), 'CSR_BAD_SIGNATURE'],
    ['an RSA-1024 key', () => fx.csr(keys['rsa:1024']!), 'CSR_WEAK_KEY'],
    ['an RSA key with exponent 3', () => fx.csr(keys['rsa:2048:3']!), 'CSR_UNSUPPORTED_KEY'],
    ['an RSA key with exponent 17', () => fx.csr(keys['rsa:2048:17']!), 'CSR_UNSUPPORTED_KEY'],
    ['a secp256k1 key', () => fx.csr(keys['ec:secp256k1']!), 'CSR_UNSUPPORTED_KEY'],
    ['a P-521 key', () => fx.csr(keys['ec:P-521']!), 'CSR_UNSUPPORTED_KEY'],
    ['an Ed25519 key', () => fx.csr(keys.ed25519!), 'CSR_UNSUPPORTED_ALGORITHM'],
    ['a SHA-1 signature', () => fx.csr(keys['ec:P-256']!, { digest: 'sha1' }), 'CSR_UNSUPPORTED_ALGORITHM'],
  ];

  it.each(cases)('refuses %s', (_name, make, code) => {
    let caught: unknown;
    try {
      parseCsr(make());
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(MusterError);
    expect((caught as MusterError).code).toBe(code);
  });

  it('never accepts a CSR with any single bit flipped in its signed part', () => {
    const der = readPemBlocks(valid())[0]!.der;
    for (let bit = 8 * 4; bit < der.length * 8 - 8 * 80; bit += 7) {
      const copy = Buffer.from(der);
      copy[bit >> 3]! ^= 1 << (bit & 7);
      expect(() => parseCsr(toPem(copy, 'CERTIFICATE REQUEST'))).toThrow(MusterError);
    }
  });
});
