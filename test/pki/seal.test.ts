/** Sealing under the cluster data key (src/pki/seal.ts, src/pki/sealed-key.ts): what opens, and every way a sealed value is refused. */
import { describe, expect, it } from 'vitest';
import { DATA_KEY_BYTES, generateDataKey, seal, unseal, type SealedValue } from '../../src/pki/seal.js';
import { isSealedKey, openNodeKey, sealNodeKey } from '../../src/pki/sealed-key.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { codeOfSync } from '../helpers/codes.js';

const key = generateDataKey();
const CONTEXT = 'ca/key';

/** The code and message `fn` fails with (undefined when it returns). */
function refusal(fn: () => unknown): { code: string; message: string } | undefined {
  const code = codeOfSync(fn);
  if (code === undefined) return undefined;
  try {
    fn();
  } catch (error) {
    return { code, message: (error as Error).message };
  }
  return undefined;
}

/** `sealed` with one bit of its ciphertext+tag bytes flipped at `index`. */
function flipped(sealed: SealedValue, index: number): SealedValue {
  const data = Buffer.from(sealed.data, 'base64');
  data[index] = data[index]! ^ 0x01;
  return { ...sealed, data: data.toString('base64') };
}

describe('seal', () => {
  it('opens what it sealed, under the same key and record, with a fresh nonce each time', () => {
    const sealed = seal(key, 'secret', CONTEXT);
    expect(unseal(key, sealed, CONTEXT).toString('utf8')).toBe('secret');
    expect(Buffer.from(sealed.data, 'base64')).toHaveLength('secret'.length + 16);
    expect(seal(key, 'secret', CONTEXT).iv).not.toBe(sealed.iv);
  });

  it('refuses a sealed value moved to another record (the record key is bound as additional data)', () => {
    const sealed = seal(key, 'the CA key', 'ca/key');
    for (const other of ['ca/rotation-key', 'external-ca/auth-key', 'ca/key ', '']) {
      expect(
        refusal(() => unseal(key, sealed, other)),
        other,
      ).toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/cannot be decrypted/) });
    }
  });

  it('refuses a value with any one bit flipped, in the ciphertext or in the tag', () => {
    const sealed = seal(key, 'a secret of some length', CONTEXT);
    const length = Buffer.from(sealed.data, 'base64').length;
    for (let index = 0; index < length; index += 1) {
      expect(
        refusal(() => unseal(key, flipped(sealed, index), CONTEXT)),
        `byte ${index} of ${length} (tag from ${length - 16})`,
      ).toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/cannot be decrypted/) });
    }
    const iv = Buffer.from(sealed.iv, 'base64');
    iv[0] = iv[0]! ^ 0x80;
    expect(refusal(() => unseal(key, { ...sealed, iv: iv.toString('base64') }, CONTEXT))?.code).toBe('STATE_CORRUPT');
  });

  it('refuses a tag cut short (GCM would check a shorter tag) and a value shorter than a tag', () => {
    const sealed = seal(key, 'secret', CONTEXT);
    const data = Buffer.from(sealed.data, 'base64');
    expect(refusal(() => unseal(key, { ...sealed, data: data.subarray(0, data.length - 4).toString('base64') }, CONTEXT))?.code).toBe('STATE_CORRUPT');
    expect(refusal(() => unseal(key, { ...sealed, data: data.subarray(0, 15).toString('base64') }, CONTEXT))).toEqual({
      code: 'STATE_CORRUPT',
      message: `the sealed ${CONTEXT} is malformed`,
    });
  });

  it.each([0, 8, 11, 13, 16])('refuses an IV of %i bytes as malformed (only 96-bit nonces are sealed)', (bytes) => {
    const sealed = seal(key, 'secret', CONTEXT);
    // A 16-byte IV keeps the first 12 (GCM hashes longer IVs, so the tag would merely fail): the length check must refuse it first.
    const iv = Buffer.concat([Buffer.from(sealed.iv, 'base64'), Buffer.alloc(4)]).subarray(0, bytes);
    expect(refusal(() => unseal(key, { ...sealed, iv: iv.toString('base64') }, CONTEXT))).toEqual({
      code: 'STATE_CORRUPT',
      message: `the sealed ${CONTEXT} is malformed`,
    });
  });

  it.each([0, 16, DATA_KEY_BYTES - 1, DATA_KEY_BYTES + 1, 64])('refuses a data key of %i bytes, to seal and to open', (bytes) => {
    const sealed = seal(key, 'secret', CONTEXT);
    const wrong = Buffer.alloc(bytes, 7);
    expect(refusal(() => seal(wrong, 'secret', CONTEXT))).toEqual({ code: 'STATE_CORRUPT', message: 'the cluster data key has the wrong length' });
    expect(refusal(() => unseal(wrong, sealed, CONTEXT))).toEqual({ code: 'STATE_CORRUPT', message: 'the cluster data key has the wrong length' });
  });

  it("refuses another cluster's data key", () => {
    expect(refusal(() => unseal(generateDataKey(), seal(key, 'secret', CONTEXT), CONTEXT))).toMatchObject({
      code: 'STATE_CORRUPT',
      message: expect.stringMatching(/cannot be decrypted/),
    });
  });
});

describe('sealed node.key', () => {
  const keyPem = generateNodeKeySync().privateKeyPem;
  const sealedPem = sealNodeKey(key, keyPem);

  /** The sealed file with one bit of its decoded body flipped at `index`. */
  function tampered(index: number): string {
    const lines = sealedPem.trim().split('\n');
    const body = Buffer.from(lines.slice(1, -1).join(''), 'base64');
    body[index] = body[index]! ^ 0x01;
    return `${lines[0]}\n${body.toString('base64')}\n${lines.at(-1)}\n`;
  }

  it('opens under the data key it was sealed with, and is no private key PEM', () => {
    expect(isSealedKey(sealedPem)).toBe(true);
    expect(sealedPem).not.toContain('PRIVATE KEY');
    expect(openNodeKey(key, sealedPem)).toBe(keyPem);
  });

  it('refuses a sealed node.key with one bit flipped anywhere: nonce, ciphertext or tag', () => {
    const length = Buffer.from(sealedPem.trim().split('\n').slice(1, -1).join(''), 'base64').length;
    for (const index of [0, 11, 12, 13, Math.floor(length / 2), length - 17, length - 16, length - 1]) {
      expect(
        refusal(() => openNodeKey(key, tampered(index))),
        `byte ${index}`,
      ).toMatchObject({ code: 'STATE_CORRUPT' });
    }
  });

  it('refuses a truncated or unframed sealed node.key as malformed', () => {
    const lines = sealedPem.trim().split('\n');
    expect(refusal(() => openNodeKey(key, `${lines[0]}\nAAAA\n${lines.at(-1)}\n`))).toEqual({
      code: 'STATE_CORRUPT',
      message: 'the sealed node key is malformed',
    });
    expect(refusal(() => openNodeKey(key, lines.slice(0, -1).join('\n')))).toEqual({ code: 'STATE_CORRUPT', message: 'the sealed node key is malformed' });
  });

  it('refuses a value sealed for another record, put in the shape of a sealed node.key', () => {
    const other = seal(key, keyPem, 'ca/key');
    const body = Buffer.concat([Buffer.from(other.iv, 'base64'), Buffer.from(other.data, 'base64')]).toString('base64');
    const moved = `-----BEGIN MUSTER SEALED NODE KEY-----\n${body}\n-----END MUSTER SEALED NODE KEY-----\n`;
    expect(refusal(() => openNodeKey(key, moved))).toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/cannot be decrypted/) });
  });

  it("refuses another cluster's data key", () => {
    expect(refusal(() => openNodeKey(generateDataKey(), sealedPem))?.code).toBe('STATE_CORRUPT');
  });
});
