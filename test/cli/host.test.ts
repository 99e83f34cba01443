/** --host / MUSTER_HOST as docker reads DOCKER_HOST: tcp://H[:P], unix:///PATH, H[:P], port 4377 by default; anything else refused. */
import { describe, expect, it } from 'vitest';
import { parseHostTarget } from '../../src/cli/connect.js';
import { codeOfSync } from '../helpers/codes.js';

describe('parseHostTarget', () => {
  it('reads every form docker users bring, with 4377 as the default port', () => {
    expect(parseHostTarget('tcp://10.0.0.1:4000')).toEqual({ kind: 'tcp', addr: '10.0.0.1:4000' });
    expect(parseHostTarget('tcp://10.0.0.1')).toEqual({ kind: 'tcp', addr: '10.0.0.1:4377' });
    expect(parseHostTarget('tcp://manager.example:4377/')).toEqual({ kind: 'tcp', addr: 'manager.example:4377' });
    expect(parseHostTarget('10.0.0.1')).toEqual({ kind: 'tcp', addr: '10.0.0.1:4377' });
    expect(parseHostTarget('10.0.0.1:4378')).toEqual({ kind: 'tcp', addr: '10.0.0.1:4378' });
    expect(parseHostTarget('[::1]:4378')).toEqual({ kind: 'tcp', addr: '[::1]:4378' });
    expect(parseHostTarget('unix:///var/lib/muster/manager/control.sock')).toEqual({ kind: 'unix', path: '/var/lib/muster/manager/control.sock' });
  });

  it('refuses what it cannot reach with ADDRESS_INVALID and a hint, instead of a lookup of a strange name', () => {
    for (const bad of ['http://10.0.0.1:4377', 'https://m:4377', 'ssh://root@m', 'unix://relative.sock', 'm:4377/path', 'tcp://m:notaport', 'm:99999']) {
      expect(
        codeOfSync(() => parseHostTarget(bad)),
        bad,
      ).toBe('ADDRESS_INVALID');
    }
  });
});
