import { describe, expect, it } from 'vitest';
import { formatHostPort, parseHostPort } from '../../src/core/address.js';

describe('parseHostPort', () => {
  it.each([
    ['127.0.0.1:4377', undefined, { host: '127.0.0.1', port: 4377 }],
    ['mgr.example.com:80', undefined, { host: 'mgr.example.com', port: 80 }],
    ['[::1]:4377', undefined, { host: '::1', port: 4377 }],
    ['10.0.0.1', 4377, { host: '10.0.0.1', port: 4377 }],
    ['::1', 4377, { host: '::1', port: 4377 }],
    ['0.0.0.0:0', undefined, { host: '0.0.0.0', port: 0 }],
  ])('reads %s', (text, port, expected) => {
    expect(parseHostPort(text, port)).toEqual(expected);
  });

  it.each([['10.0.0.1'], ['host:'], ['host:99999'], ['host:-1'], ['host:abc'], ['[nope]:1'], ['bad host:1'], [':4377'], ['']])('refuses %j', (text) => {
    expect(() => parseHostPort(text)).toThrow(expect.objectContaining({ code: 'ADDRESS_INVALID' }));
  });

  it('brackets IPv6 when writing', () => {
    expect(formatHostPort({ host: '::1', port: 1 })).toBe('[::1]:1');
    expect(formatHostPort({ host: '127.0.0.1', port: 1 })).toBe('127.0.0.1:1');
  });
});
