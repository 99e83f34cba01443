/**
 * Putting a cluster on a managed store (`init --store etcd`, `store migrate
 * --to etcd`): this manager's etcd member is started as a new one-member
 * store with the manager's certificate, etcd's access control is turned on
 * with this manager as its only user, and every record of the embedded
 * store is copied in (the cluster record last, so a copy cut short can be
 * redone). The member is stopped again; the manager starts it when it serves.
 */
import { formatHostPort, parseHostPort } from '../core/address.js';
import type { Clock } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import type { ManagedEtcdSpec } from '../config/manager-files.js';
import type { DataDirLayout } from '../config/paths.js';
import { KEYS, readAllRecords, type ClusterStore } from '../store/cluster-store.js';
import { enableManagerAccess } from '../store/etcd-access.js';
import { EtcdMember, findEtcdBinary, httpsUrl } from '../store/etcd-member.js';
import { EtcdStore } from '../store/etcd-store.js';
import { managedConnection, memberAddrs, memberConfig, removeMemberTls, writeMemberTls, type MemberTls } from '../store/managed-etcd.js';
import type { NodeRecord } from '../store/records.js';
import { checkBindable } from './bind-check.js';
import { findSetpriv } from './setpriv.js';

/** Puts per etcd transaction (etcd's default limit is 128 operations). */
const CHUNK = 100;

/** The flags that place a managed member. */
export interface MemberFlags {
  etcdClientAddr?: string | undefined;
  etcdPeerAddr?: string | undefined;
  etcdBinary?: string | undefined;
}

/** The first member of a managed store, checked before anything is written, and its store.json once the cluster has its IDs. */
export interface FirstMember {
  /** The hosts the first manager's certificate names besides its API host. */
  hosts: string[];
  spec(nodeId: string, clusterId: string): ManagedEtcdSpec;
}

/**
 * Places the first member of a managed store for a manager advertised at
 * `advertise`: checks that etcd is there (ETCD_MISSING with the install
 * command) and that the member's ports are free, before anything is written.
 */
export async function prepareFirstMember(params: { advertise: string; flags: MemberFlags; searchPath: string }): Promise<FirstMember> {
  const { binary } = findEtcdBinary({ ...(params.flags.etcdBinary === undefined ? {} : { explicit: params.flags.etcdBinary }), searchPath: params.searchPath });
  const addrs = memberAddrs(parseHostPort(params.advertise).host, { clientAddr: params.flags.etcdClientAddr, peerAddr: params.flags.etcdPeerAddr });
  await checkBindable(parseHostPort(addrs.listenClientAddr));
  await checkBindable(parseHostPort(addrs.listenPeerAddr));
  const base = {
    kind: 'etcd-managed' as const,
    ...addrs,
    clusterState: 'new' as const,
    endpoints: [],
    ...(params.flags.etcdBinary === undefined ? {} : { binary }),
  };
  return {
    hosts: memberHosts(base),
    spec: (nodeId, clusterId) => ({ ...base, clusterToken: clusterId, initialCluster: `${nodeId}=${httpsUrl(addrs.peerAddr)}` }),
  };
}

/** The hosts a managed member's certificate must name: its client and peer hosts, and loopback. */
export function memberHosts(spec: Pick<ManagedEtcdSpec, 'clientAddr' | 'peerAddr'>): string[] {
  return [...new Set([parseHostPort(spec.clientAddr).host, parseHostPort(spec.peerAddr).host, '127.0.0.1'])];
}

/** Copies every record of `from` into the new managed store, then stops its member. */
export async function foundManagedStore(params: {
  from: ClusterStore;
  spec: ManagedEtcdSpec;
  layout: DataDirLayout;
  nodeId: string;
  clusterId: string;
  tls: MemberTls;
  logger: Logger;
  clock: Clock;
  random: Random;
  searchPath: string;
}): Promise<{ records: number }> {
  const { spec, layout, logger } = params;
  const records = await readAllRecords(params.from);
  if (!records.some((r) => r.key === KEYS.cluster.key)) throw new MusterError('STATE_CORRUPT', 'the embedded store holds no complete cluster');
  // The first manager's record says where its member is reached (its certificate names those hosts from now on).
  const own = records.find((r) => r.key === KEYS.nodes.ref(params.nodeId).key);
  if (own !== undefined) own.value = { ...(own.value as NodeRecord), storeMember: { clientAddr: spec.clientAddr, peerAddr: spec.peerAddr } };
  const { binary } = findEtcdBinary({ ...(spec.binary === undefined ? {} : { explicit: spec.binary }), searchPath: params.searchPath });
  await writeMemberTls(layout, params.tls);
  const member = new EtcdMember(memberConfig(spec, { layout, nodeId: params.nodeId, binary }), {
    logger,
    clock: params.clock,
    random: params.random,
    setpriv: findSetpriv(params.searchPath),
  });
  try {
    await member.start();
    const store = await EtcdStore.connect({ connection: managedConnection(spec, params.tls), clusterId: params.clusterId, logger });
    try {
      // From here on only a serving manager's certificate opens the store: this one's, until others join.
      await enableManagerAccess(store.etcd, params.nodeId);
      if ((await store.get(KEYS.cluster)) !== undefined) throw new MusterError('CLUSTER_EXISTS', `the managed store already holds cluster ${params.clusterId}`);
      const ordered = [...records.filter((r) => r.key !== KEYS.cluster.key), ...records.filter((r) => r.key === KEYS.cluster.key)];
      for (let i = 0; i < ordered.length; i += CHUNK) {
        const last = i + CHUNK >= ordered.length;
        const ok = await store.commit({ compares: last ? [{ key: KEYS.cluster.key, version: 0 }] : [], puts: ordered.slice(i, i + CHUNK), deletes: [] });
        if (!ok) throw new MusterError('CLUSTER_EXISTS', `the managed store already holds cluster ${params.clusterId}`);
      }
    } finally {
      await store.close();
    }
  } finally {
    await member.stop();
    await removeMemberTls(layout);
  }
  logger.info(
    { records: records.length, client: formatHostPort(parseHostPort(spec.clientAddr)), peer: spec.peerAddr },
    'the managed store (this manager’s etcd member) holds the cluster',
  );
  return { records: records.length };
}
