/** The data dir: where it is (DESIGN §5) and what lives in it (DESIGN §6). */
import { join, resolve } from 'node:path';

/** Finds the data dir: --data-dir, else $MUSTER_DATA_DIR, else /var/lib/muster for root, else the XDG state dir. */
export function resolveDataDir(params: { flag?: string; envDir?: string; xdgStateHome?: string; uid: number; home: string }): string {
  if (params.flag !== undefined && params.flag !== '') return resolve(params.flag);
  if (params.envDir !== undefined && params.envDir !== '') return resolve(params.envDir);
  if (params.uid === 0) return '/var/lib/muster';
  const state = params.xdgStateHome;
  return join(state !== undefined && state !== '' ? state : join(params.home, '.local', 'state'), 'muster');
}

/** Every path under a data dir. */
export interface DataDirLayout {
  dataDir: string;
  nodeJson: string;
  certificatesDir: string;
  rootCa: string;
  nodeCert: string;
  nodeKey: string;
  managerDir: string;
  /** The embedded store (LevelDB). */
  dbDir: string;
  /** Which store the manager serves: embedded, or etcd with its endpoints and credentials (0600). */
  storeJson: string;
  /** The cluster data key the CA key is sealed under (0600). */
  dataKey: string;
  /** A managed store's etcd member: its data (0700). */
  etcdDir: string;
  /** The member's TLS files, written by the manager as it starts the member (0700; removed when it stops). */
  etcdTlsDir: string;
  /** The running manager's local API socket (0600): local admin commands and `muster unlock`. */
  controlSocket: string;
  /** What `muster leave` keeps of a node that left: which node, which cluster, how, when (0600); its daemon tells a leave from a removal by it. */
  leftJson: string;
  /** Held by the daemon that runs on this data dir: its pid and start time (0600; see node/data-dir-lock.ts). */
  lockFile: string;
  /** Where a manager appends its audit trail unless told otherwise; kept when the node leaves. */
  auditLog: string;
  /** The running node's local socket (0600): `muster cert add|ls|rm` talk to its agent there. */
  agentSocket: string;
  /** The node's service certificates: what each one names, where its files go, its hook (0600). */
  servicesJson: string;
}

/** The layout of `dataDir`. */
export function dataDirLayout(dataDir: string): DataDirLayout {
  const certificatesDir = join(dataDir, 'certificates');
  const managerDir = join(dataDir, 'manager');
  return {
    dataDir,
    nodeJson: join(dataDir, 'node.json'),
    certificatesDir,
    rootCa: join(certificatesDir, 'root-ca.crt'),
    nodeCert: join(certificatesDir, 'node.crt'),
    nodeKey: join(certificatesDir, 'node.key'),
    managerDir,
    dbDir: join(managerDir, 'db'),
    storeJson: join(managerDir, 'store.json'),
    dataKey: join(managerDir, 'data.key'),
    etcdDir: join(managerDir, 'etcd'),
    etcdTlsDir: join(managerDir, 'etcd-tls'),
    controlSocket: join(managerDir, 'control.sock'),
    leftJson: join(dataDir, 'left.json'),
    lockFile: join(dataDir, 'muster.lock'),
    auditLog: join(managerDir, 'audit.log'),
    agentSocket: join(dataDir, 'agent.sock'),
    servicesJson: join(dataDir, 'services.json'),
  };
}
