import { describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { parseExternalCaFlag } from '../../src/config/external-ca.js';

const failure = (fn: () => unknown): MusterError => {
  try {
    fn();
  } catch (error) {
    if (error instanceof MusterError) return error;
    throw error;
  }
  throw new Error('expected a failure');
};

describe('--external-ca', () => {
  it('takes an https URL', () => {
    expect(parseExternalCaFlag(`protocol=cfssl,url=https://ca:8888/,authkey=${'ab'.repeat(16)}`)).toEqual({
      protocol: 'cfssl',
      url: 'https://ca:8888',
      authKeyHex: 'ab'.repeat(16),
    });
  });

  it('refuses a plain http URL, saying why and how to insist, unless told it is insecure on purpose', () => {
    const error = failure(() => parseExternalCaFlag('protocol=cfssl,url=http://ca:8888'));
    expect(error).toMatchObject({ code: 'USAGE', exitCode: 2 });
    expect(error.message).toMatch(/^--external-ca url http:\/\/ca:8888 is plain http: .*in clear/);
    expect(error.hint).toMatch(/https:\/\/.*--external-ca-insecure/);
    expect(parseExternalCaFlag('protocol=cfssl,url=http://ca:8888', { insecure: true })).toEqual({ protocol: 'cfssl', url: 'http://ca:8888' });
    // The refusal never echoes an authsign key.
    expect(failure(() => parseExternalCaFlag(`protocol=cfssl,url=http://ca:8888,authkey=${'cd'.repeat(16)}`)).message).not.toContain('cdcd');
  });
});
