import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE, MusterError, isErrorCode } from '../../src/core/errors.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('the error catalogue', () => {
  it.each(Object.keys(ERROR_CATALOGUE).map((c) => [c]))('%s is documented in the README error table with its status and exit code', (code) => {
    const spec = ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE];
    expect(readme).toContain(`| \`${code}\` | ${spec.status} | ${spec.exit} |`);
  });

  it('uses 4xx for everything caused by input and 5xx only for the manager side', () => {
    const fiveHundreds = Object.entries(ERROR_CATALOGUE)
      .filter(([, s]) => s.status >= 500)
      .map(([c]) => c)
      .sort();
    expect(fiveHundreds).toEqual([
      'DATA_KEY_UNAVAILABLE',
      'ETCD_MEMBER_FAILED',
      'EXTERNAL_CA_ERROR',
      'EXTERNAL_CA_UNAVAILABLE',
      'FILE_ACCESS',
      'INTERNAL',
      'ISSUED_CERT_INVALID',
      'MANAGER_ERROR',
      'MANAGER_LOCKED',
      'MANAGER_UNREACHABLE',
      'STATE_CORRUPT',
      'STORE_CONFLICT',
      'STORE_UNAVAILABLE',
    ]);
  });

  it('serialises to the API error body', () => {
    const error = new MusterError('TOKEN_INVALID', 'invalid join token: x');
    expect(error.toJSON()).toEqual({ statusCode: 400, code: 'TOKEN_INVALID', message: 'invalid join token: x', hint: ERROR_CATALOGUE.TOKEN_INVALID.hint });
    expect(error.exitCode).toBe(2);
    expect(isErrorCode('TOKEN_INVALID')).toBe(true);
    expect(isErrorCode('toString')).toBe(false);
  });
});
