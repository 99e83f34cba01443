import { describe, expect, it } from 'vitest';
import { isMusterError } from '../../src/core/errors.js';
import { seededRandom } from '../../src/core/random.js';
import { formatUnlockKey, generateUnlockKey, keyEncryptionKey, parseUnlockKey, unlockKeyId } from '../../src/token/unlock-key.js';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (error) {
    return isMusterError(error) ? error.code : 'not a MusterError';
  }
};

describe('unlock keys (SwarmKit manager/encryption format)', () => {
  it("is SWMKEY-1- and the key in unpadded standard base64, like Docker's", () => {
    // The key of a real `docker swarm update --autolock=true` output parses and prints back the same.
    const docker = 'SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt8';
    const key = parseUnlockKey(`  ${docker}\n`);
    expect(key).toHaveLength(32);
    expect(formatUnlockKey(key)).toBe(docker);
    const fresh = formatUnlockKey(generateUnlockKey(seededRandom(1)));
    expect(fresh).toMatch(/^SWMKEY-1-[A-Za-z0-9+/]{43}$/);
    expect(parseUnlockKey(fresh).equals(generateUnlockKey(seededRandom(1)))).toBe(true);
  });

  it('refuses anything else with UNLOCK_KEY_INVALID, without quoting it', () => {
    const good = formatUnlockKey(Buffer.alloc(32, 1));
    for (const text of ['', 'SWMTKN-1-abc', good.slice(0, -1), `${good}A`, `${good}=`, good.replace('SWMKEY-1-', 'SWMKEY-2-'), `${good.slice(0, -1)}!`]) {
      expect(
        code(() => parseUnlockKey(text)),
        text,
      ).toBe('UNLOCK_KEY_INVALID');
    }
    // The last character carries two padding bits: a second spelling of the same bytes is refused.
    const last = good.at(-1)!;
    const twin = good.slice(0, -1) + String.fromCharCode(last.charCodeAt(0) + 1);
    expect(code(() => parseUnlockKey(twin))).toBe('UNLOCK_KEY_INVALID');
    try {
      parseUnlockKey(`${good}x`);
    } catch (error) {
      expect((error as Error).message).not.toContain(good.slice(9));
    }
  });

  it('derives the wrapping key and a public ID with HKDF, distinct per key and from each other', () => {
    const a = Buffer.alloc(32, 1);
    const b = Buffer.alloc(32, 2);
    expect(keyEncryptionKey(a)).toHaveLength(32);
    expect(keyEncryptionKey(a).equals(keyEncryptionKey(a))).toBe(true);
    expect(keyEncryptionKey(a).equals(keyEncryptionKey(b))).toBe(false);
    expect(keyEncryptionKey(a).equals(a)).toBe(false);
    expect(unlockKeyId(a)).toMatch(/^[0-9a-f]{16}$/);
    expect(unlockKeyId(a)).not.toBe(unlockKeyId(b));
    expect(keyEncryptionKey(a).toString('hex')).not.toContain(unlockKeyId(a));
  });
});
