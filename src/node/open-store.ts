/** Opens the store a manager serves, from its manager/store.json: the embedded LevelDB, an etcd the user runs, or its own etcd member. */
import type { Logger } from '../core/logger.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { Random } from '../core/random.js';
import { writeStoreSpec, type ManagedEtcdSpec, type StoreSpec } from '../config/manager-files.js';
import type { DataDirLayout } from '../config/paths.js';
import type { ClusterStore } from '../store/cluster-store.js';
import { EtcdMember, findEtcdBinary } from '../store/etcd-member.js';
import { EtcdStore } from '../store/etcd-store.js';
import { LevelStore } from '../store/level-store.js';
import {
  ManagedMembership,
  addClientEndpoints,
  managedConnection,
  memberConfig,
  promoteSelf,
  removeMemberTls,
  writeMemberTls,
  type MemberTls,
} from '../store/managed-etcd.js';
import type { ManagerBundle } from '../api/schemas.js';
import { findSetpriv } from './setpriv.js';

/** Opens the store; `create` only for a cluster being founded on the embedded store. Not for a managed store (see {@link openManagedStore}). */
export async function openStore(
  spec: StoreSpec,
  params: { layout: DataDirLayout; clusterId: string; logger: Logger; create?: boolean },
): Promise<ClusterStore> {
  if (spec.kind === 'level') return LevelStore.openDir(params.layout.dbDir, { create: params.create === true });
  if (spec.kind === 'etcd-managed') throw new Error('a managed store is opened with its member (openManagedStore)');
  const { kind: _kind, keySealed: _sealed, ...connection } = spec;
  return EtcdStore.connect({ connection, clusterId: params.clusterId, logger: params.logger });
}

/** A managed store as its manager holds it: the member it runs, the store client, and the membership it changes. */
export interface ManagedStore {
  member: EtcdMember;
  store: EtcdStore;
  membership: ManagedMembership;
  /** Stops the member and takes its TLS files (the key in clear among them) away. */
  stopMember(): Promise<void>;
}

/**
 * Starts this manager's etcd member with its certificate, promotes it to a
 * voting member on its first start after a join (once it has caught up),
 * and opens the store through it.
 */
export async function openManagedStore(
  spec: ManagedEtcdSpec,
  params: {
    layout: DataDirLayout;
    nodeId: string;
    clusterId: string;
    tls: () => MemberTls;
    logger: Logger;
    clock: Clock;
    random: Random;
    searchPath: string;
    forceNewCluster?: boolean;
  },
): Promise<ManagedStore> {
  const { layout, logger } = params;
  const { binary } = findEtcdBinary({ ...(spec.binary === undefined ? {} : { explicit: spec.binary }), searchPath: params.searchPath });
  await writeMemberTls(layout, params.tls());
  const member = new EtcdMember(
    memberConfig(spec, { layout, nodeId: params.nodeId, binary, ...(params.forceNewCluster === true ? { forceNewCluster: true } : {}) }),
    {
      logger,
      clock: params.clock,
      random: params.random,
      setpriv: findSetpriv(params.searchPath),
    },
  );
  let following: TimerHandle | undefined;
  let stopped = false;
  let checking: Promise<void> = Promise.resolve();
  const stopMember = async (): Promise<void> => {
    stopped = true;
    following?.cancel();
    await checking; // a check in flight would write store.json after a demotion deleted it
    await member.stop();
    await removeMemberTls(layout);
  };
  try {
    await member.start();
    // --force-new-cluster is for this one start: a restart later must not cut the members that joined since.
    member.configure({ forceNewCluster: false });
    if (spec.learner === true) {
      await promoteSelf({ connection: managedConnection(spec, params.tls(), 'others'), memberName: params.nodeId, logger });
      const { learner: _learner, ...promoted } = spec;
      await writeStoreSpec(layout, promoted);
    }
    const store = await EtcdStore.connect({ connection: managedConnection(spec, params.tls()), clusterId: params.clusterId, logger });
    const membership = new ManagedMembership({ client: store.etcd, clusterToken: spec.clusterToken, tls: params.tls, logger, now: () => params.clock.now() });
    // The members etcd lists now, and from then on every MEMBERS_CHECK_MS: store.json remembers them, the client reaches them.
    let remembered: readonly string[] = spec.endpoints; // what store.json lists: written here only
    const follow = async (): Promise<void> => {
      if (stopped) return;
      const endpoints = await rememberMembers(spec, remembered, store, layout, logger);
      remembered = endpoints.length > 0 ? endpoints : remembered;
      const added = addClientEndpoints(store.etcd, endpoints, managedConnection(spec, params.tls()));
      if (added.length > 0) logger.info({ members: added }, "this manager's store client reaches the members that joined since it started");
    };
    await follow();
    const again = (): void => {
      following = params.clock.setTimer(MEMBERS_CHECK_MS, () => {
        checking = follow().catch(() => undefined);
        void checking.then(() => {
          if (!stopped) again();
        });
      });
    };
    again();
    return { member, store, membership, stopMember };
  } catch (error) {
    await stopMember();
    throw error;
  }
}

/** How often a manager reads the members etcd lists, to reach those that joined since it started. */
const MEMBERS_CHECK_MS = 10_000;

/**
 * Keeps store.json's list of the other members as etcd has it now (members
 * that joined since this one did), so that the next start can reach the
 * store through them while its own member is still starting or restarting.
 */
async function rememberMembers(spec: ManagedEtcdSpec, known: readonly string[], store: EtcdStore, layout: DataDirLayout, logger: Logger): Promise<string[]> {
  try {
    const members = (await store.etcd.cluster.memberList({})).members;
    const endpoints = [...new Set(members.flatMap((m) => m.clientURLs.map((url) => url.replace(/^https?:\/\//, '').replace(/\/+$/, ''))))]
      .filter((e) => e !== spec.clientAddr)
      .sort();
    const { learner: _learner, ...current } = spec;
    if (
      endpoints.join(',') !==
      [...known]
        .filter((e) => e !== spec.clientAddr)
        .sort()
        .join(',')
    )
      await writeStoreSpec(layout, { ...current, endpoints });
    return endpoints;
  } catch (error) {
    logger.warn(
      { err: error instanceof Error ? error.message : String(error) },
      'could not read the store members to remember them; keeping the list store.json has',
    );
    return [];
  }
}

/** What a new manager is given to serve the same store: etcd access (an etcd the user runs) and the data key. None on the embedded store. */
export function bundleFor(spec: StoreSpec, dataKey: Buffer): ManagerBundle | undefined {
  if (spec.kind === 'level') return undefined;
  if (spec.kind === 'etcd-managed') return { dataKey: dataKey.toString('base64') };
  const { kind: _kind, keySealed: _sealed, ...etcd } = spec;
  return { etcd, dataKey: dataKey.toString('base64') };
}

/** Where this node's own member runs, should it serve a managed store (join flags, or etcd's ports on its advertise host). */
export interface LocalMember {
  clientAddr: string;
  peerAddr: string;
  listenClientAddr: string;
  listenPeerAddr: string;
  binary?: string;
}

/** The store.json a manager writes from what the managers gave it. */
export function specFromBundle(bundle: ManagerBundle, local: LocalMember | undefined): StoreSpec {
  if (bundle.member !== undefined) {
    if (local === undefined) throw new Error('a managed store needs this node to run a member');
    return {
      kind: 'etcd-managed',
      ...local,
      clusterToken: bundle.member.clusterToken,
      initialCluster: bundle.member.initialCluster,
      clusterState: 'existing',
      endpoints: bundle.member.endpoints,
      learner: true,
    };
  }
  if (bundle.etcd === undefined) throw new Error('the managers named no store');
  return { kind: 'etcd', ...bundle.etcd, endpoints: bundle.etcd.endpoints };
}
