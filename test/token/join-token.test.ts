import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { seededRandom } from '../../src/core/random.js';
import { decodeBase36, encodeBase36 } from '../../src/token/base36.js';
import { formatJoinToken, generateJoinToken, matchJoinToken, parseJoinToken } from '../../src/token/join-token.js';
import { seeded, withSeed } from '../helpers/property.js';

const DOCKER = [
  'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx',
  'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-7p73s1dx5in4tatdymyhg9hu2',
  'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-b30ljddcqhef9b9v4rs7mel7t',
];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return error instanceof MusterError ? error.code : `non-muster: ${String(error)}`;
  }
}

describe('DESIGN §9 vectors', () => {
  it('encodes the digest vector (49 significant digits, padded to 50)', () => {
    const digest = Buffer.from('05da740cf2577a25224c53019e2cce99bcc5ba09664ad6bb2a9425d9ebd1b53e', 'hex');
    expect(encodeBase36(digest, 50)).toBe('0592juwtisdb8486z4x67lxcqrd7cn1609gs5664ghqmzxnebi');
    expect(decodeBase36('0592juwtisdb8486z4x67lxcqrd7cn1609gs5664ghqmzxnebi', 32)?.equals(digest)).toBe(true);
  });

  it.each([
    ['16 zero bytes', Buffer.alloc(16), '0000000000000000000000000'],
    ['16 × ff', Buffer.alloc(16, 0xff), 'f5lxx1zz5pnorynqglhzmsp33'],
    ['00 01 02 … 0f', Buffer.from(Array.from({ length: 16 }, (_, i) => i)), '000avh9he7dy896m08s18udxr'],
  ])('encodes the secret vector for %s', (_name, bytes, text) => {
    expect(encodeBase36(bytes, 25)).toBe(text);
    expect(decodeBase36(text, 16)?.equals(bytes)).toBe(true);
  });

  it('encodes digest 2^256−1', () => {
    const max = Buffer.alloc(32, 0xff);
    expect(encodeBase36(max, 50)).toBe('6dp5qcb22im238nr3wvp0ic7q99w035jmy2iw7i6n43d37jtof');
    expect(decodeBase36('6dp5qcb22im238nr3wvp0ic7q99w035jmy2iw7i6n43d37jtof', 32)?.equals(max)).toBe(true);
  });

  it("parses Docker's three tokens, which share a digest, and re-formats them byte for byte", () => {
    const parsed = DOCKER.map(parseJoinToken);
    for (const token of parsed) {
      expect(token.digest.toString('hex')).toBe('9529c6f3c5558ac3ec02b338a52d3c5434e0835a8af6f1e124649e87afaa2fb5');
      expect(token.version).toBe(1);
    }
    expect(new Set(parsed.map((t) => t.secret.toString('hex'))).size).toBe(3);
    expect(parsed.map(formatJoinToken)).toEqual(DOCKER);
  });

  const digest50 = DOCKER[0]!.split('-')[2]!;
  const secret25 = DOCKER[0]!.split('-')[3]!;
  it.each([
    ['invalidtoken', 'invalidtoken'],
    ['a v1 token with a 24-character secret', `SWMTKN-1-${digest50}-${secret25.slice(1)}`],
    ['SWMTKN-2 with only 4 parts', `SWMTKN-2-${digest50}-${secret25}`],
    ['version 0', `SWMTKN-0-${digest50}-${secret25}`],
    ['upper-case letters', DOCKER[0]!.toUpperCase()],
    ['upper case in the secret only', `SWMTKN-1-${digest50}-${secret25.toUpperCase()}`],
    ['a 49-character digest', `SWMTKN-1-${digest50.slice(1)}-${secret25}`],
    ['a digest above 2^256−1', `SWMTKN-1-${'z'.repeat(50)}-${secret25}`],
    ['a secret above 2^128−1', `SWMTKN-1-${digest50}-${'z'.repeat(25)}`],
    ['a v2 token with FIPS flag 2', `SWMTKN-2-2-${digest50}-${secret25}`],
    ['an empty string', ''],
    ['a non-string', 42],
  ])('refuses %s as TOKEN_INVALID', (_name, text) => {
    expect(codeOf(() => parseJoinToken(text))).toBe('TOKEN_INVALID');
  });

  it('accepts SWMTKN-2 with the FIPS flag', () => {
    const token = parseJoinToken(`SWMTKN-2-1-${digest50}-${secret25}`);
    expect(token).toMatchObject({ version: 2, fips: true });
    expect(formatJoinToken(token)).toBe(`SWMTKN-2-1-${digest50}-${secret25}`);
    expect(parseJoinToken(`SWMTKN-2-0-${digest50}-${secret25}`).fips).toBe(false);
  });

  it('tolerates surrounding whitespace from copy and paste', () => {
    expect(formatJoinToken(parseJoinToken(`  ${DOCKER[1]}\n`))).toBe(DOCKER[1]);
  });

  it('never quotes the token in its error message', () => {
    const secretish = `SWMTKN-1-${digest50}-${secret25.slice(0, 24)}`;
    try {
      parseJoinToken(secretish);
      expect.unreachable();
    } catch (error) {
      expect((error as MusterError).message).not.toContain(secret25.slice(0, 24));
      expect((error as MusterError).message).toMatch(/^invalid join token: the secret part has 24 characters, expected 25$/);
      expect((error as MusterError).hint).toMatch(/SWMTKN-1-/);
    }
  });
});

describe('properties', () => {
  const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((a) => Buffer.from(a));
  // Leading zero bytes are the classic base-x trap; make them common.
  const zeroHeavy = (n: number) => fc.tuple(fc.nat({ max: n }), bytes(n)).map(([zeros, b]) => Buffer.concat([Buffer.alloc(zeros), b.subarray(zeros)]));

  it(withSeed('format → parse round-trips for any digest and secret, v1 and v2'), () => {
    fc.assert(
      fc.property(zeroHeavy(32), zeroHeavy(16), fc.constantFrom(1 as const, 2 as const), fc.boolean(), (digest, secret, version, fips) => {
        const token = { version, fips: version === 2 && fips, digest, secret };
        const text = formatJoinToken(token);
        expect(text).toHaveLength(version === 1 ? 85 : 87);
        expect(text).toMatch(/^SWMTKN-[12]-(?:[01]-)?[0-9a-z]{50}-[0-9a-z]{25}$/);
        const back = parseJoinToken(text);
        expect(back.digest.equals(digest)).toBe(true);
        expect(back.secret.equals(secret)).toBe(true);
        expect(back.version).toBe(version);
        expect(back.fips).toBe(token.fips);
      }),
      seeded(500),
    );
  });

  it(withSeed('base36 keeps integer semantics (equal to BigInt base36, padded)'), () => {
    fc.assert(
      fc.property(zeroHeavy(32), (b) => {
        const expected = BigInt(`0x${b.toString('hex') || '0'}`)
          .toString(36)
          .padStart(50, '0');
        expect(encodeBase36(b, 50)).toBe(expected);
      }),
      seeded(500),
    );
  });

  const valid = DOCKER[0]!;
  const nearValid = fc
    .tuple(fc.nat({ max: valid.length - 1 }), fc.string({ maxLength: 3 }), fc.nat({ max: 3 }))
    .map(([at, insert, drop]) => valid.slice(0, at) + insert + valid.slice(at + drop));

  it(withSeed('the parser only ever returns a token or throws TOKEN_INVALID'), () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), nearValid, fc.anything()), (input) => {
        const code = codeOf(() => parseJoinToken(input));
        expect(code === undefined || code === 'TOKEN_INVALID').toBe(true);
      }),
      seeded(2000),
    );
  });
});

describe('generate and match', () => {
  const digest = createHash('sha256').update('root').digest();

  it('generates v1 tokens carrying the digest and a fresh secret', () => {
    const random = seededRandom('t');
    const a = generateJoinToken(digest, random);
    const b = generateJoinToken(digest, random);
    expect(parseJoinToken(a).digest.equals(digest)).toBe(true);
    expect(a).not.toBe(b);
    expect(a.slice(0, 59)).toBe(b.slice(0, 59));
  });

  it('matches the whole token to its role by its SHA-256, and nothing else', () => {
    const current = { worker: generateJoinToken(digest, seededRandom(1)), manager: generateJoinToken(digest, seededRandom(2)) };
    const sha = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();
    const hashes = { worker: sha(current.worker), manager: sha(current.manager) };
    expect(matchJoinToken(current.worker, hashes)).toBe('worker');
    expect(matchJoinToken(current.manager, hashes)).toBe('manager');
    const flipped = current.worker.slice(0, -1) + (current.worker.endsWith('0') ? '1' : '0');
    expect(matchJoinToken(flipped, hashes)).toBeUndefined();
    expect(matchJoinToken(current.worker.slice(0, -1), hashes)).toBeUndefined();
    expect(matchJoinToken('', hashes)).toBeUndefined();
    expect(matchJoinToken(`${current.worker}0`, hashes)).toBeUndefined();
    // The hash itself is no token.
    expect(matchJoinToken(hashes.worker.toString('hex'), hashes)).toBeUndefined();
  });
});
