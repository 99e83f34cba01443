import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { MAX_CSR_BYTES, createCsr, parseCsr } from '../../src/pki/csr.js';
import { DerNode, NULL, OID, TAG, bits, oid, readPemBlocks, seq, tlv, toPem } from '../../src/pki/der.js';
import { generateNodeKeySync, spkiDer } from '../../src/pki/keys.js';
import { RSA_8192_CSR, opensslFixtures, opensslStatus, scratchDir } from '../helpers/openssl.js';

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
    for (const spec of ['ec:P-256', 'ec:P-384', 'rsa:2048', 'rsa:4096', 'rsa:1024', 'rsa:2048:3', 'rsa:2048:17', 'ec:secp256k1', 'ec:P-521', 'ed25519'])
      keys[spec] = fx.key(spec);
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
    [
      'a flipped signature byte',
      () =>
        editDer(valid(), (d) => {
          d[d.length - 3]! ^= 0x01;
          return d;
        }),
      'CSR_BAD_SIGNATURE',
    ],
    [
      'a tampered subject',
      () =>
        editDer(valid(), (d) => {
          const i = d.indexOf(Buffer.from('node'));
          d[i] = 0x4e;
          return d;
        }),
      'CSR_BAD_SIGNATURE',
    ],
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

/** The parts of a CSR, to put together again differently. */
function partsOf(pem: string): { info: DerNode; algorithm: Buffer; signature: Buffer } {
  const request = DerNode.parse(Buffer.from(readPemBlocks(pem)[0]!.der), (why) => new Error(why));
  return { info: request.child(0), algorithm: request.child(1).bytes, signature: request.child(2).content.subarray(1) };
}

/** A CSR from its parts: the info DER, the algorithm identifier, the signature BIT STRING content (its unused-bits byte first). */
function assemble(info: Buffer, algorithm: Buffer, signatureContent: Buffer): string {
  return toPem(seq(info, algorithm, tlv(TAG.BIT_STRING, signatureContent)), 'CERTIFICATE REQUEST');
}

/** The info with its children replaced as `edit` says, signed again with `key` (so only the edit can be refused). */
function resigned(pem: string, key: KeyObject, hash: string, edit: (children: Buffer[]) => Buffer[]): string {
  const { info, algorithm } = partsOf(pem);
  const newInfo = seq(...edit(info.children().map((child) => child.bytes)));
  return assemble(newInfo, algorithm, Buffer.concat([Buffer.of(0), sign(hash, newInfo, key)]));
}

/** The code and message parseCsr fails with (undefined when it accepts). */
function refusal(pem: string): { code: string; message: string } | undefined {
  try {
    parseCsr(pem);
    return undefined;
  } catch (error) {
    if (error instanceof MusterError) return { code: error.code, message: error.message };
    throw error;
  }
}

describe('parseCsr: structure (issue 32)', () => {
  const ec = generateNodeKeySync();
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ecCsr = createCsr({ privateKey: ec.privateKey });
  const rsaCsr = createCsr({ privateKey: rsa.privateKey });

  it('refuses a signature algorithm that does not match the key, though the signature verifies under the key', () => {
    // An EC key's ECDSA signature labelled sha256WithRSAEncryption, and an RSA key's PKCS#1 signature labelled ecdsa-with-SHA256.
    const ecAsRsa = partsOf(ecCsr);
    const rsaAsEc = partsOf(rsaCsr);
    for (const pem of [
      assemble(ecAsRsa.info.bytes, seq(oid(OID.sha256WithRsa), NULL), Buffer.concat([Buffer.of(0), ecAsRsa.signature])),
      assemble(rsaAsEc.info.bytes, seq(oid(OID.ecdsaWithSha256)), Buffer.concat([Buffer.of(0), rsaAsEc.signature])),
    ]) {
      expect(refusal(pem)).toEqual({ code: 'CSR_UNSUPPORTED_ALGORITHM', message: 'the CSR signature algorithm does not match its key' });
    }
    expect(parseCsr(ecCsr).keyKind).toBe('ec-p256');
    expect(parseCsr(rsaCsr).keyKind).toBe('rsa');
  });

  it.each([
    ['1 (a v2 request)', Buffer.of(TAG.INTEGER, 1, 1)],
    ['2', Buffer.of(TAG.INTEGER, 1, 2)],
    ['-1', Buffer.of(TAG.INTEGER, 1, 0xff)],
    ['0 in two bytes (not DER)', Buffer.of(TAG.INTEGER, 2, 0, 0)],
    ['2^64', Buffer.of(TAG.INTEGER, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0)],
  ])('refuses version %s, signed so that only the version is wrong', (_name, version) => {
    expect(refusal(resigned(ecCsr, ec.privateKey, 'sha256', ([, ...rest]) => [version, ...rest]))).toEqual({
      code: 'CSR_MALFORMED',
      message: 'the CSR is not a valid PKCS#10 request: unsupported version',
    });
    // The same re-signing with version 0 is accepted: the test's CSRs are valid but for the version.
    expect(parseCsr(resigned(ecCsr, ec.privateKey, 'sha256', (children) => children)).keyKind).toBe('ec-p256');
  });

  it.each([1, 4, 7])('refuses a signature BIT STRING that declares %i unused bits, though its bytes are the valid signature', (unused) => {
    for (const [pem, alg] of [
      [ecCsr, seq(oid(OID.ecdsaWithSha256))],
      [rsaCsr, seq(oid(OID.sha256WithRsa), NULL)],
    ] as const) {
      const { info, signature } = partsOf(pem);
      expect(refusal(assemble(info.bytes, alg, Buffer.concat([Buffer.of(unused), signature])))?.code).toBe('CSR_BAD_SIGNATURE');
      expect(parseCsr(assemble(info.bytes, alg, Buffer.concat([Buffer.of(0), signature])))).toBeDefined();
    }
  });

  it('refuses an empty signature BIT STRING', () => {
    const { info, algorithm } = partsOf(ecCsr);
    expect(refusal(assemble(info.bytes, algorithm, Buffer.of(0)))?.code).toBe('CSR_BAD_SIGNATURE');
  });

  /** A CSR whose key is an RSA SPKI built from bytes (the policy refuses it before any signature is checked). */
  function csrWithRsaSpki(modulusBits: number, exponent: Buffer): string {
    const modulus = Buffer.alloc(modulusBits / 8, 0xab);
    modulus[0] = 0xc1;
    const int = (bytes: Buffer): Buffer => tlv(TAG.INTEGER, bytes[0]! & 0x80 ? Buffer.concat([Buffer.of(0), bytes]) : bytes);
    const spki = seq(seq(oid(OID.rsaEncryption), NULL), bits(seq(int(modulus), int(exponent))));
    const { info, algorithm, signature } = partsOf(rsaCsr);
    const children = info.children().map((child) => child.bytes);
    return assemble(seq(children[0]!, children[1]!, spki, ...children.slice(3)), algorithm, Buffer.concat([Buffer.of(0), signature]));
  }

  it('refuses an RSA key of 8200 bits and one with exponent 2^32+1, by the key policy', () => {
    expect(refusal(csrWithRsaSpki(8200, Buffer.of(1, 0, 1)))).toMatchObject({ code: 'CSR_UNSUPPORTED_KEY', message: expect.stringMatching(/8200/) });
    expect(refusal(csrWithRsaSpki(4096, Buffer.of(1, 0, 0, 0, 1)))).toMatchObject({
      code: 'CSR_UNSUPPORTED_KEY',
      message: expect.stringMatching(/only 65537 is accepted/),
    });
    // The same shapes at the limit get past the policy, to the signature (which these made-up keys cannot match).
    expect(refusal(csrWithRsaSpki(8192, Buffer.of(1, 0, 1)))?.code).toBe('CSR_BAD_SIGNATURE');
  });

  it('accepts a real RSA-8192 CSR (the largest key the policy takes)', () => {
    const parsed = parseCsr(readFileSync(RSA_8192_CSR, 'utf8'));
    expect(parsed.keyKind).toBe('rsa');
    expect(parsed.publicKey.asymmetricKeyDetails).toMatchObject({ modulusLength: 8192, publicExponent: 65537n });
  });
});
