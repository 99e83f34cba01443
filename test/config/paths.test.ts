import { describe, expect, it } from 'vitest';
import { dataDirLayout, resolveDataDir } from '../../src/config/paths.js';

describe('resolveDataDir', () => {
  it('prefers the flag, then MUSTER_DATA_DIR, then /var/lib/muster for root, then XDG', () => {
    expect(resolveDataDir({ flag: '/x', envDir: '/y', uid: 0, home: '/h' })).toBe('/x');
    expect(resolveDataDir({ envDir: '/y', uid: 0, home: '/h' })).toBe('/y');
    expect(resolveDataDir({ uid: 0, home: '/h' })).toBe('/var/lib/muster');
    expect(resolveDataDir({ xdgStateHome: '/s', uid: 1000, home: '/h' })).toBe('/s/muster');
    expect(resolveDataDir({ uid: 1000, home: '/h' })).toBe('/h/.local/state/muster');
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
      storeJson: '/d/manager/store.json',
      dataKey: '/d/manager/data.key',
      etcdDir: '/d/manager/etcd',
      etcdTlsDir: '/d/manager/etcd-tls',
      controlSocket: '/d/manager/control.sock',
      auditLog: '/d/manager/audit.log',
      leftJson: '/d/left.json',
      lockFile: '/d/muster.lock',
      agentSocket: '/d/agent.sock',
      servicesJson: '/d/services.json',
    });
  });
});
