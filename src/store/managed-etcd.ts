/**
 * A managed store (DESIGN §10, `init --store etcd`): each manager runs an
 * etcd member (etcd-member.ts) with its own certificate from the cluster CA,
 * and opens the store with that same certificate; etcd's own users, one per
 * serving manager (etcd-access.ts), decide who gets in. This module turns a
 * manager's store.json into the member's configuration and TLS files and
 * into the connection its store client uses, and makes the membership
 * changes the managers ask for: a manager admitted (a learner first, then
 * promoted once it has caught up), a manager removed, the members' health
 * and the quorum a removal would leave.
 */
import { chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3, IMember } from 'etcd3';
import { etcd3 } from './etcd3-module.js';
import { ensurePrivateDir, writeFileAtomic } from '../core/atomic-file.js';
import { formatHostPort, parseHostPort } from '../core/address.js';
import { MusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { grantManagerAccess, revokeManagerAccess } from './etcd-access.js';
import { MEMBER_PEER_HOSTNAME, httpsUrl, type EtcdMemberConfig } from './etcd-member.js';
import { etcdOptions, type EtcdConnection } from './etcd-store.js';

/** What a manager's store.json says of its member (config/manager-files.ts MemberSpec). */
export interface MemberSpec {
  clientAddr: string;
  peerAddr: string;
  listenClientAddr: string;
  listenPeerAddr: string;
  clusterToken: string;
  initialCluster: string;
  clusterState: 'new' | 'existing';
  endpoints: string[];
}

/** Where a manager keeps its member's files (config/paths.ts MemberDirs). */
export interface MemberDirs {
  managerDir: string;
  etcdDir: string;
  etcdTlsDir: string;
}

/** The default ports of a member: etcd's own. */
export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;

/** Where a new member is reached: what a manager-token join sends. */
export interface MemberAddrs {
  clientAddr: string;
  peerAddr: string;
}

/** The key and certificates a member and its manager's store client present. */
export interface MemberTls {
  certPem: string;
  keyPem: string;
  /** The roots the cluster trusts now (two during a root rotation). */
  rootPem: string;
}

/** The member addresses of a manager advertised at `advertiseHost`, with the flags that override them. */
export function memberAddrs(
  advertiseHost: string,
  flags: { clientAddr?: string | undefined; peerAddr?: string | undefined },
): MemberAddrs & { listenClientAddr: string; listenPeerAddr: string } {
  const client = parseHostPort(flags.clientAddr ?? formatHostPort({ host: advertiseHost, port: ETCD_CLIENT_PORT }), ETCD_CLIENT_PORT);
  const peer = parseHostPort(flags.peerAddr ?? formatHostPort({ host: advertiseHost, port: ETCD_PEER_PORT }), ETCD_PEER_PORT);
  return { clientAddr: formatHostPort(client), peerAddr: formatHostPort(peer), listenClientAddr: formatHostPort(client), listenPeerAddr: formatHostPort(peer) };
}

/** The TLS files of this manager's member, written (0600 in 0700) each time it starts. */
export function memberTlsPaths(layout: MemberDirs): { certFile: string; keyFile: string; trustedCaFile: string } {
  return {
    certFile: join(layout.etcdTlsDir, 'member.crt'),
    keyFile: join(layout.etcdTlsDir, 'member.key'),
    trustedCaFile: join(layout.etcdTlsDir, 'trust.pem'),
  };
}

/**
 * Writes the member's TLS files. The key is the node's own, in clear for
 * etcd while the member runs; {@link removeMemberTls} takes it away when
 * the member stops (under autolock it exists only while unlocked).
 */
export async function writeMemberTls(layout: MemberDirs, tls: MemberTls): Promise<void> {
  await ensurePrivateDir(layout.managerDir);
  await ensurePrivateDir(layout.etcdTlsDir);
  await chmod(layout.etcdTlsDir, 0o700);
  const paths = memberTlsPaths(layout);
  await writeFileAtomic(paths.keyFile, tls.keyPem, 0o600);
  await writeFileAtomic(paths.certFile, tls.certPem, 0o600);
  await writeFileAtomic(paths.trustedCaFile, tls.rootPem, 0o600);
}

/** Removes the member's TLS files (the key in clear among them). */
export async function removeMemberTls(layout: MemberDirs): Promise<void> {
  await rm(layout.etcdTlsDir, { recursive: true, force: true });
}

/** The member's configuration from store.json. */
export function memberConfig(spec: MemberSpec, params: { layout: MemberDirs; nodeId: string; binary: string; forceNewCluster?: boolean }): EtcdMemberConfig {
  return {
    binary: params.binary,
    name: params.nodeId,
    dataDir: params.layout.etcdDir,
    clientAddr: spec.clientAddr,
    listenClientAddr: spec.listenClientAddr,
    peerAddr: spec.peerAddr,
    listenPeerAddr: spec.listenPeerAddr,
    tls: memberTlsPaths(params.layout),
    initialCluster: spec.initialCluster,
    clusterState: spec.clusterState,
    clusterToken: spec.clusterToken,
    ...(params.forceNewCluster === true ? { forceNewCluster: true } : {}),
  };
}

/**
 * How this manager's store client reaches the members: its own member
 * first, the others after; its own certificate; the members' certificates
 * checked as managers' (every one names swarm-manager), whatever address
 * they are reached on.
 */
export function managedConnection(spec: MemberSpec, tls: MemberTls, only?: 'others'): EtcdConnection {
  const endpoints =
    only === 'others' ? spec.endpoints.filter((e) => e !== spec.clientAddr) : [spec.clientAddr, ...spec.endpoints.filter((e) => e !== spec.clientAddr)];
  return { endpoints, cacertPem: tls.rootPem, certPem: tls.certPem, keyPem: tls.keyPem, serverName: MEMBER_PEER_HOSTNAME };
}

/** The health of one member, as `node ls` and the quorum rules see it. */
export interface MemberHealth {
  /** The manager's node ID (etcd's member name; empty for a member added but never started). */
  name: string;
  id: string;
  learner: boolean;
  clientUrls: string[];
  peerUrls: string[];
  healthy: boolean;
}

/** How long a member may take to answer a health check. */
const HEALTH_DEADLINE_MS = 2_000;
/** How long a join waits for etcd to accept one more learner (etcd 3.4 takes one at a time, and none while a member joined moments ago). */
const LEARNER_WAIT_MS = 60_000;
/** How long a learner that never started may stand in the way of a manager join before it is taken as left behind. */
const DANGLING_LEARNER_MS = 20_000;
/** How long a removal waits for etcd to accept it (it refuses while the members left have not been connected for a few seconds). */
const REMOVE_WAIT_MS = 30_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function etcdMessage(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0]!.slice(0, 200) : String(error);
}

function storeError(what: string, error: unknown): MusterError {
  if (error instanceof MusterError) return error;
  return new MusterError('STORE_UNAVAILABLE', `${what}: ${etcdMessage(error)}`, { cause: error });
}

/** host:port of an https URL. */
function hostPortOf(url: string): string {
  return url.replace(/^https?:\/\//, '').replace(/\/+$/, '');
}

/** True when the member at these endpoints serves a status request in time, to a client presenting `tls`. */
export async function memberAnswers(endpoints: string[], tls: MemberTls): Promise<boolean> {
  const options = etcdOptions({ endpoints, cacertPem: tls.rootPem, certPem: tls.certPem, keyPem: tls.keyPem, serverName: MEMBER_PEER_HOSTNAME });
  const { Etcd3 } = etcd3();
  const client = new Etcd3({ ...options, dialTimeout: HEALTH_DEADLINE_MS, defaultCallOptions: () => ({ deadline: Date.now() + HEALTH_DEADLINE_MS }) });
  try {
    await client.maintenance.status();
    return true;
  } catch {
    return false;
  } finally {
    client.close();
  }
}

/**
 * The membership of a managed store, changed through the store's own etcd
 * client (a serving manager's, which holds etcd's root role).
 */
export class ManagedMembership {
  private cachedHealth: { at: number; members: MemberHealth[] } | undefined;

  constructor(private readonly deps: { client: Etcd3; clusterToken: string; tls: () => MemberTls; logger: Logger; now: () => number }) {}

  /** Every member, with whether it answers now (each asked directly; cached for a second). */
  async health(): Promise<MemberHealth[]> {
    const now = this.deps.now();
    if (this.cachedHealth !== undefined && now - this.cachedHealth.at < 1_000) return this.cachedHealth.members;
    let list: IMember[];
    try {
      list = (await this.deps.client.cluster.memberList({})).members;
    } catch (error) {
      throw storeError('cannot list the etcd members', error);
    }
    const members = await Promise.all(
      list.map(async (member) => ({
        name: member.name,
        id: member.ID,
        learner: member.isLearner === true,
        clientUrls: member.clientURLs,
        peerUrls: member.peerURLs,
        healthy: member.clientURLs.length > 0 && (await this.answers(member.clientURLs.map(hostPortOf))),
      })),
    );
    this.cachedHealth = { at: now, members };
    return members;
  }

  private answers(endpoints: string[]): Promise<boolean> {
    return memberAnswers(endpoints, this.deps.tls());
  }
  /**
   * Adds the manager `nodeId` as a learner reached at `addrs.peerAddr`, and
   * gives its certificate access to the store. Returns what its member
   * starts from. Idempotent for a join that is retried.
   */
  async admit(nodeId: string, addrs: MemberAddrs): Promise<{ initialCluster: string; endpoints: string[]; clusterToken: string }> {
    const { client } = this.deps;
    const peerUrl = httpsUrl(addrs.peerAddr);
    const started = this.deps.now();
    const deadline = started + LEARNER_WAIT_MS;
    for (;;) {
      let list: IMember[];
      try {
        list = (await client.cluster.memberList({})).members;
      } catch (error) {
        throw storeError('cannot list the etcd members', error);
      }
      const clash = list.find((m) => m.peerURLs.includes(peerUrl) && m.name !== '' && m.name !== nodeId);
      if (clash !== undefined) {
        throw new MusterError('USAGE', `the etcd peer address ${addrs.peerAddr} is taken by manager ${clash.name}`, {
          hint: 'give this manager another --etcd-peer-addr',
        });
      }
      if (!list.some((m) => m.peerURLs.includes(peerUrl))) {
        try {
          await client.cluster.memberAdd({ peerURLs: [peerUrl], isLearner: true });
        } catch (error) {
          // etcd 3.4 takes one learner at a time, and no new member until every member has been connected a few seconds: wait.
          if (/too many learner|unhealthy cluster/i.test(etcdMessage(error)) && this.deps.now() < deadline) {
            if (this.deps.now() - started > DANGLING_LEARNER_MS) await this.dropDanglingLearners(list, peerUrl);
            await sleep(500);
            continue;
          }
          throw storeError('etcd refused the new member', error);
        }
      }
      break;
    }
    try {
      await grantManagerAccess(client, nodeId);
    } catch (error) {
      throw storeError('cannot give the new manager access to the store', error);
    }
    this.cachedHealth = undefined;
    const members = (await client.cluster.memberList({})).members;
    const initial = members
      .filter((m) => m.peerURLs.length > 0)
      .map((m) => `${m.name === '' || m.peerURLs.includes(peerUrl) ? nodeId : m.name}=${m.peerURLs[0]!}`);
    const endpoints = members.flatMap((m) => m.clientURLs.map(hostPortOf));
    return { initialCluster: [...new Set(initial)].join(','), endpoints: [...new Set(endpoints)], clusterToken: this.deps.clusterToken };
  }

  /**
   * Removes learners whose member never started (etcd names a member when it
   * first starts) and that are not `peerUrl`'s: left by a manager join whose
   * node gave up, or whose answering manager died between adding the
   * learner and recording the node. etcd 3.4 takes one learner at a time, so
   * one left behind would refuse every later manager join.
   */
  private async dropDanglingLearners(list: readonly IMember[], peerUrl: string): Promise<void> {
    for (const m of list) {
      if (m.isLearner !== true || m.name !== '' || m.peerURLs.includes(peerUrl)) continue;
      try {
        await this.deps.client.cluster.memberRemove({ ID: m.ID });
        this.deps.logger.warn({ peer: m.peerURLs.join(',') }, 'removed an etcd learner whose member never started (a manager join that did not finish)');
      } catch (error) {
        this.deps.logger.debug({ err: etcdMessage(error) }, 'could not remove a learner that never started');
      }
    }
  }

  /**
   * Refuses to take `nodeId` out when the members left would be fewer
   * reachable than a quorum of them (Swarm's rule for demote, rm and leave).
   */
  async checkQuorumWithout(nodeId: string): Promise<void> {
    this.cachedHealth = undefined;
    const members = (await this.health()).filter((m) => !m.learner);
    const leaving = members.find((m) => m.name === nodeId);
    if (leaving === undefined) return; // not a voting member: its removal changes no quorum
    const remaining = members.filter((m) => m !== leaving);
    const reachable = remaining.filter((m) => m.healthy).length;
    const quorum = Math.floor(remaining.length / 2) + 1;
    if (reachable < quorum) {
      throw new MusterError(
        'QUORUM_AT_RISK',
        `removing manager ${nodeId} would leave ${reachable} reachable of ${remaining.length} store members, fewer than a quorum of ${quorum}`,
        {
          details: { reachable, members: members.length, quorum },
          hint: 'bring the unreachable managers back first (or demote an unreachable one); if a quorum is lost for good, recover with `muster init --force-new-cluster` on a surviving manager',
        },
      );
    }
  }

  /** Takes manager `nodeId`'s member out of the store and its certificate's access away. Idempotent. */
  async remove(nodeId: string, peerAddr?: string): Promise<void> {
    const { client, logger } = this.deps;
    const deadline = this.deps.now() + REMOVE_WAIT_MS;
    for (;;) {
      try {
        // Access first: from this moment its certificate opens nothing, whatever becomes of its member.
        await revokeManagerAccess(client, nodeId);
        const list = (await client.cluster.memberList({})).members;
        const member = list.find((m) => m.name === nodeId || (peerAddr !== undefined && m.peerURLs.includes(httpsUrl(peerAddr))));
        if (member !== undefined) await client.cluster.memberRemove({ ID: member.ID });
        break;
      } catch (error) {
        // etcd refuses to remove a voter until the members left have been connected a few seconds (a member promoted
        // moments ago), and a member that just restarted or left makes the client skip it for a moment: try again, a while.
        if (this.deps.now() < deadline) {
          await sleep(500);
          continue;
        }
        throw storeError(`cannot remove manager ${nodeId} from the store`, error);
      }
    }
    this.cachedHealth = undefined;
    logger.info({ nodeId }, 'removed the manager from the store: its etcd member and its access');
  }
}

/**
 * Promotes this manager's member from learner to voting member, once it has
 * caught up with the leader (etcd refuses until then), asking the other
 * members. Resolves when it is a voting member.
 */
export async function promoteSelf(params: { connection: EtcdConnection; memberName: string; logger: Logger; timeoutMs?: number }): Promise<void> {
  const { Etcd3 } = etcd3();
  const client = new Etcd3(etcdOptions(params.connection));
  const deadline = Date.now() + (params.timeoutMs ?? 120_000);
  let last = '';
  try {
    for (;;) {
      try {
        const members = (await client.cluster.memberList({})).members;
        const me = members.find((m) => m.name === params.memberName);
        if (me !== undefined && me.isLearner !== true) return;
        if (me !== undefined) {
          await client.cluster.memberPromote({ ID: me.ID });
          params.logger.info({ member: params.memberName }, 'the etcd member caught up and is a voting member now');
          return;
        }
        last = 'the member is not in the member list yet';
      } catch (error) {
        last = etcdMessage(error);
        if (/not a learner/i.test(last)) return;
      }
      if (Date.now() > deadline) throw new MusterError('ETCD_MEMBER_FAILED', `the etcd member could not be promoted to a voting member: ${last}`);
      await sleep(500);
    }
  } finally {
    client.close();
  }
}

/** How long one manager may hold the right to restart its member (its lease ends it should the manager die meanwhile). */
const MEMBER_RESTART_LOCK_TTL_S = 30;
/** How long a manager waits for its turn to restart its member before it goes ahead anyway. */
const MEMBER_RESTART_TURN_MS = 120_000;

/**
 * Runs `restart` (this manager's member restarting to trust new roots)
 * while no other manager of the cluster restarts its own: an etcd lock under
 * the cluster's prefix. Every manager learns of a root rotation at the same
 * moment; members restarting together would take the quorum down. `restart`
 * resolves once the member serves again, so the next one waits for that.
 */
export async function restartInTurn(params: {
  client: Etcd3;
  clusterId: string;
  logger: Logger;
  restart: () => Promise<void>;
  cancelled?: () => boolean;
}): Promise<void> {
  const lock = params.client.lock(`/muster/${params.clusterId}/locks/member-restart`).ttl(MEMBER_RESTART_LOCK_TTL_S);
  const deadline = Date.now() + MEMBER_RESTART_TURN_MS;
  for (;;) {
    try {
      await lock.acquire();
      break;
    } catch (error) {
      // Another manager's member is restarting (or the store is busy): wait for the turn; past the deadline, go ahead.
      if (params.cancelled?.() === true) return;
      if (Date.now() > deadline) {
        params.logger.warn({ err: etcdMessage(error) }, 'no turn to restart the etcd member came; restarting it now');
        await params.restart();
        return;
      }
      if (!(error instanceof etcd3().EtcdLockFailedError)) params.logger.debug({ err: etcdMessage(error) }, 'waiting for a turn to restart the etcd member');
      await sleep(500);
    }
  }
  try {
    await params.restart();
  } finally {
    await lock.release().catch(() => undefined); // its lease ends it otherwise
  }
}

/**
 * Makes the store client present `tls` (and trust its roots) from its next
 * connections on, and opens them now. etcd3 builds its gRPC credentials once,
 * with no API to change them; after a root rotation the members trust only
 * the new root, so a client presenting its certificate from the old root
 * would be refused. The new credentials come from a client built (never
 * connected) with the new files, so they are etcd3's own kind; watches and
 * leases reconnect on their own as after any lost connection.
 */
export function useClientTls(client: Etcd3, tls: MemberTls): void {
  const { Etcd3 } = etcd3();
  const donor = new Etcd3({
    hosts: 'https://127.0.0.1:1',
    credentials: { rootCertificate: Buffer.from(tls.rootPem), privateKey: Buffer.from(tls.keyPem), certChain: Buffer.from(tls.certPem) },
  });
  const next = poolHosts(donor)[0]?.channelCredentials;
  donor.close();
  const hosts = poolHosts(client);
  if (hosts.length === 0 || next === undefined)
    throw new MusterError('INTERNAL', 'the etcd client has no hosts to give new credentials (etcd3 changed its connection pool)');
  for (const host of hosts) {
    host.channelCredentials = next;
    host.resetAllServices();
  }
}

/** What muster touches of etcd3's connection pool, which has no API to change its hosts (pinned by package-lock; test/store/etcd-member.test.ts covers both uses). */
interface PoolHost {
  host: string;
  channelCredentials: unknown;
  resetAllServices(): void;
}

function poolHosts(client: Etcd3): PoolHost[] {
  return (client as unknown as { pool?: { hosts?: PoolHost[] } }).pool?.hosts ?? [];
}

/**
 * Adds the members at `endpoints` that the store client does not reach yet
 * (managers that joined after this one started): etcd3 takes its hosts once,
 * so a manager would otherwise reach only the members it knew at its start,
 * and lose the store whenever its own member restarts. The new hosts are
 * built by etcd3 itself (a client built with them, never used) with the
 * same options. Returns the endpoints added.
 */
export function addClientEndpoints(client: Etcd3, endpoints: readonly string[], connection: EtcdConnection): string[] {
  const hosts = poolHosts(client);
  if (hosts.length === 0) return [];
  const known = new Set(hosts.map((h) => h.host));
  const missing = endpoints.filter((e) => !known.has(e));
  if (missing.length === 0) return [];
  const { Etcd3 } = etcd3();
  const donor = new Etcd3(etcdOptions({ ...connection, endpoints: missing }));
  hosts.push(...poolHosts(donor)); // the donor is never closed: its hosts are the client's now, closed with it
  return missing;
}

/**
 * Before a member restarts on purpose: when it leads the store, it hands the
 * lead to a voting member that is in step (etcd's MoveLeader), so the others
 * go on at once instead of first waiting out an election timeout. Best
 * effort: a member that cannot hand over restarts anyway.
 */
export async function handOverLead(params: { selfEndpoint: string; tls: MemberTls; logger: Logger }): Promise<void> {
  const { selfEndpoint, tls, logger } = params;
  const { Etcd3 } = etcd3();
  const client = new Etcd3(
    etcdOptions({ endpoints: [selfEndpoint], cacertPem: tls.rootPem, certPem: tls.certPem, keyPem: tls.keyPem, serverName: MEMBER_PEER_HOSTNAME }),
  );
  try {
    const status = await client.maintenance.status();
    if (status.leader !== status.header.member_id) return;
    const target = (await client.cluster.memberList({})).members.find((m) => m.ID !== status.header.member_id && m.isLearner !== true && m.name !== '');
    if (target === undefined) return;
    await client.maintenance.moveLeader({ targetID: target.ID });
    logger.info({ to: target.name }, 'this etcd member handed the lead over before it restarts');
  } catch (error) {
    logger.debug({ err: etcdMessage(error) }, 'this etcd member could not hand the lead over; it restarts anyway');
  } finally {
    client.close();
  }
}
