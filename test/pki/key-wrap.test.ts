import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { unwrapKey, wrapKey, type WrappedKey } from '../../src/pki/key-wrap.js';
import { codeOfSync } from '../helpers/codes.js';

const secret = Buffer.alloc(32, 7);

describe('a data key wrapped for one manager', () => {
  const kinds = {
    'EC P-256': () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    'EC P-384': () => generateKeyPairSync('ec', { namedCurve: 'P-384' }),
    'RSA 2048': () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  };
  for (const [kind, make] of Object.entries(kinds)) {
    it(`${kind}: opens with its own private key and context only`, () => {
      const mine = make();
      const other = make();
      const wrapped = wrapKey(secret, mine.publicKey, 'data key 1');
      expect(JSON.stringify(wrapped)).not.toContain(secret.toString('base64'));
      expect(unwrapKey(wrapped, mine.privateKey, 'data key 1')).toEqual(secret);
      // Fresh randomness each time: two wraps of one key differ.
      expect(wrapKey(secret, mine.publicKey, 'data key 1').data).not.toBe(wrapped.data);
      expect(codeOfSync(() => unwrapKey(wrapped, other.privateKey, 'data key 1'))).toBe('STATE_CORRUPT');
      expect(codeOfSync(() => unwrapKey(wrapped, mine.privateKey, 'data key 2'))).toBe('STATE_CORRUPT');
      const data = Buffer.from(wrapped.data, 'base64');
      data[data.length - 1]! ^= 1;
      expect(codeOfSync(() => unwrapKey({ ...wrapped, data: data.toString('base64') } as WrappedKey, mine.privateKey, 'data key 1'))).toBe('STATE_CORRUPT');
    });
  }

  it('refuses a malformed EC wrap as corrupt, never with a crash', () => {
    const mine = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const wrapped = wrapKey(secret, mine.publicKey, 'c');
    if (wrapped.alg !== 'ECDH-ES+A256GCM') throw new Error('expected an EC wrap');
    expect(codeOfSync(() => unwrapKey({ ...wrapped, iv: 'AAAA' }, mine.privateKey, 'c'))).toBe('STATE_CORRUPT');
    expect(codeOfSync(() => unwrapKey({ ...wrapped, epk: 'AAAA' }, mine.privateKey, 'c'))).toBe('STATE_CORRUPT');
    expect(codeOfSync(() => unwrapKey({ ...wrapped, data: '' }, mine.privateKey, 'c'))).toBe('STATE_CORRUPT');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    expect(codeOfSync(() => unwrapKey(wrapped, p384.privateKey, 'c'))).toBe('STATE_CORRUPT');
  });
});
