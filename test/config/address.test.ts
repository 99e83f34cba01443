import { describe, expect, it } from 'vitest';
import { formatHostPort, parseHostPort } from '../../src/config/address.js';
import { dataDirLayout, resolveDataDir } from '../../src/config/paths.js';

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

describe('resolveDataDir', () => {
  it('prefers the flag, then MUSTER_DATA_DIR, then /var/lib/muster for root, then XDG', () => {
    expect(resolveDataDir({ flag: '/x', env: { MUSTER_DATA_DIR: '/y' }, uid: 0, home: '/h' })).toBe('/x');
    expect(resolveDataDir({ env: { MUSTER_DATA_DIR: '/y' }, uid: 0, home: '/h' })).toBe('/y');
    expect(resolveDataDir({ env: {}, uid: 0, home: '/h' })).toBe('/var/lib/muster');
    expect(resolveDataDir({ env: { XDG_STATE_HOME: '/s' }, uid: 1000, home: '/h' })).toBe('/s/muster');
    expect(resolveDataDir({ env: {}, uid: 1000, home: '/h' })).toBe('/h/.local/state/muster');
  });

  it('lays the data dir out as DESIGN §6 says', () => {
    expect(dataDirLayout('/d')).toEqual({
      dataDir: '/d',
      nodeJson: '/d/node.json',
      certificatesDir: '/d/certificates',
      rootCa: '/d/certificates/root-ca.crt',
      nodeCert: '/d/certificates/node.crt',
      nodeKey: '/d/certificates/node.key',
      managerDir: '/d/manager',
      dbDir: '/d/manager/db',
    });
  });
});
