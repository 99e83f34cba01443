/** Opens the store a manager serves, from its manager/store.json: the embedded LevelDB or etcd. */
import type { Logger } from '../core/logger.js';
import type { StoreSpec } from '../config/manager-files.js';
import type { DataDirLayout } from '../config/paths.js';
import type { ClusterStore } from '../store/cluster-store.js';
import { EtcdStore } from '../store/etcd-store.js';
import { LevelStore } from '../store/level-store.js';
import type { ManagerBundle } from '../api/schemas.js';

/** Opens the store; `create` only for a cluster being founded on the embedded store. */
export async function openStore(spec: StoreSpec, params: { layout: DataDirLayout; clusterId: string; logger: Logger; create?: boolean }): Promise<ClusterStore> {
  if (spec.kind === 'level') return LevelStore.openDir(params.layout.dbDir, { create: params.create === true });
  const { kind: _kind, ...connection } = spec;
  return EtcdStore.connect({ connection, clusterId: params.clusterId, logger: params.logger });
}

/** What a new manager is given to serve the same store: etcd access and the data key. None on the embedded store. */
export function bundleFor(spec: StoreSpec, dataKey: Buffer): ManagerBundle | undefined {
  if (spec.kind !== 'etcd') return undefined;
  const { kind: _kind, ...etcd } = spec;
  return { etcd, dataKey: dataKey.toString('base64') };
}
