/** A node's own files in its data dir, cleared when it leaves or is joined again with --force. */
import { X509Certificate } from 'node:crypto';
import { rm } from 'node:fs/promises';
import Type from 'typebox';
import Value from 'typebox/value';
import { pathExists, writeFileAtomic } from '../core/atomic-file.js';
import type { Clock } from '../core/clock.js';
import { iso } from '../core/duration.js';
import { DEFAULT_RENEW_GRACE_MS } from '../api/routes.js';
import { MusterError, isMusterError } from '../core/errors.js';
import { readJsonFile } from '../core/json-file.js';
import { ApiClient } from '../api/client.js';
import { readStoreSpec } from '../config/manager-files.js';
import type { DataDirLayout } from '../config/paths.js';
import { KeyStore } from '../agent/key-store.js';
import { NODE_STATE_SCHEMA, localManagers, readNodeState, writeNodeState, type NodeState } from '../agent/node-state.js';

/**
 * left.json, what `muster leave` keeps of a node that left, so that the
 * folder says so without asking a manager (join --force reads it):
 * `{"schema":1,"nodeId":…,"clusterId":…,"how":…,"at":"<ISO time>"}`, `how`
 * being `left` (the managers marked it removed at its request), `removed`
 * (they had removed it already) or `expired` (its certificate had expired:
 * the managers were not told), or `leaving`: written before the managers are
 * told, so that the node's daemon, told a moment later that the node was
 * removed, stops as one that left (exit 0) rather than one an admin removed
 * (exit 3); join --force does not take `leaving` as out. It names one node
 * ID, so it never speaks for a node joined later into the same data dir. A
 * join deletes it.
 */
export const LeftRecord = Type.Object({
  schema: Type.Literal(1),
  nodeId: Type.String(),
  clusterId: Type.String(),
  how: Type.Union([Type.Literal('left'), Type.Literal('removed'), Type.Literal('expired'), Type.Literal('leaving')]),
  at: Type.String(),
});
export type LeftRecord = Type.Static<typeof LeftRecord>;

/** Writes left.json (atomically, 0600) before the node's files go. */
export async function writeLeftRecord(layout: DataDirLayout, left: { state: NodeState; how: LeftRecord['how']; clock: Clock }): Promise<void> {
  const record: LeftRecord = { schema: 1, nodeId: left.state.nodeId, clusterId: left.state.clusterId, how: left.how, at: iso(left.clock.now()) };
  await writeFileAtomic(layout.leftJson, `${JSON.stringify(record, null, 2)}\n`, 0o600);
}

/**
 * Deletes a node's own files: key, certificates, node.json and, on a shared
 * store, its copy of the store credentials and data key. The embedded store
 * is never deleted here (its manager is the cluster's only one).
 */
export async function clearNodeFiles(layout: DataDirLayout): Promise<void> {
  await new KeyStore(layout).remove();
  await rm(layout.nodeJson, { force: true });
  const spec = await readStoreSpec(layout).catch(() => undefined);
  if (spec?.kind === 'etcd') {
    await rm(layout.storeJson, { force: true });
    await rm(layout.dataKey, { force: true });
  }
}

/**
 * How the node `state` is known to be out of its cluster, read only: its
 * own left.json; a worker's certificate expired longer ago than the renewal
 * grace (no manager accepts it again; a manager re-issues its own, so it is
 * not out); or the managers answering NODE_REMOVED to its certificate.
 * Anything else is refused: a node they still count, or one nobody answers for.
 */
async function outOfCluster(layout: DataDirLayout, state: NodeState, clock: Clock): Promise<string> {
  const id = state.nodeId;
  const left = await readJsonFile(
    layout.leftJson,
    (value) => Value.Check(LeftRecord, value),
    () => 'is not a left.json',
  ).catch(() => undefined);
  if (left?.nodeId === id && left.how !== 'leaving') return `it left the cluster at ${left.at}`;
  const aside = `join into another --data-dir, or move ${layout.dataDir} aside`;
  const keyStore = new KeyStore(layout);
  if (await keyStore.keySealed()) {
    throw new MusterError('MANAGER_LOCKED', `the key of node ${id} is sealed under the unlock key, so join --force cannot ask the managers whether it left`, {
      hint: `start it ('muster run', then 'muster unlock') and run 'muster leave --force'; or ${aside}`,
    });
  }
  const pair = await keyStore.load();
  if (pair === undefined)
    throw new MusterError('STATE_CORRUPT', `${layout.dataDir} holds node ${id} but no certificate, so join --force cannot ask the managers whether it left`, {
      hint: aside,
    });
  const serves = (await readStoreSpec(layout).catch(() => undefined)) !== undefined;
  const expiredAt = Date.parse(new X509Certificate(pair.certPem).validTo);
  if (!serves && expiredAt + DEFAULT_RENEW_GRACE_MS < clock.now()) return `its certificate expired at ${iso(expiredAt)}, longer ago than the renewal grace`;
  const client = new ApiClient({ managers: localManagers(state), tls: pair });
  try {
    const self = await client.self();
    throw new MusterError(
      'NODE_ACTIVE',
      `node ${id} is still a ${self.node.role} of cluster ${state.clusterId}: join --force replaces only a node that was removed or left`,
      {
        hint: `'muster leave' here tells the managers and clears it (then join again), or remove it on a manager with 'muster node rm -f ${id}'`,
      },
    );
  } catch (error) {
    if (isMusterError(error, 'NODE_REMOVED')) return 'the managers removed it';
    if (isMusterError(error, 'NODE_ACTIVE')) throw error;
    if (isMusterError(error, 'CERT_EXPIRED')) {
      throw new MusterError(
        'CERT_EXPIRED',
        `the certificate of node ${id} expired, but ${serves ? 'a manager re-issues its own' : 'it can still renew within the renewal grace'}: join --force replaces only a node that was removed or left`,
        {
          hint: "start it with 'muster run' (it renews itself), or give it up with 'muster leave' and join again",
        },
      );
    }
    if (isMusterError(error)) {
      throw new MusterError(
        error.code,
        `no manager said whether node ${id} left the cluster (${error.message}); join --force replaces only a node that was removed or left`,
        {
          hint: `try again when a manager answers; or ${aside}`,
          cause: error,
        },
      );
    }
    throw error;
  } finally {
    await client.close();
  }
}

/**
 * Clears a data dir for `join --force`, only of a node that is out of its
 * cluster (see outOfCluster) and never of an embedded cluster store (the
 * cluster's only copy); a refusal changes no file. Says what it replaced.
 */
export async function clearForRejoin(layout: DataDirLayout, clock: Clock): Promise<string | undefined> {
  let state: NodeState | undefined;
  let unreadable: MusterError | undefined;
  try {
    state = await readNodeState(layout.nodeJson);
  } catch (error) {
    if (!isMusterError(error, 'STATE_CORRUPT')) throw error;
    unreadable = error;
  }
  if (state === undefined && unreadable === undefined) return undefined;
  if (await pathExists(layout.dbDir)) {
    throw new MusterError('CLUSTER_EXISTS', `${layout.dataDir} holds the embedded store of a cluster; --force would destroy that cluster`, {
      hint: 'join into another --data-dir; to end that cluster, stop its manager and delete the data dir yourself',
    });
  }
  if (state === undefined) {
    throw new MusterError(
      'STATE_CORRUPT',
      `${unreadable?.message ?? `${layout.nodeJson} cannot be read`}, so join --force cannot tell whether that node left its cluster`,
      { hint: `move ${layout.dataDir} aside and join into an empty --data-dir`, cause: unreadable },
    );
  }
  const how = await outOfCluster(layout, state, clock);
  // Out of the cluster: the managers replaced the data key when it left or was removed, so this copy opens nothing a live cluster needs.
  await clearNodeFiles(layout);
  await rm(layout.leftJson, { force: true });
  return `replacing node ${state.nodeId}: ${how}`;
}

/** Notes that the node leaves, before the managers are told (left.json, `leaving`). */
export async function markLeaving(layout: DataDirLayout, state: NodeState, clock: Clock): Promise<void> {
  await writeLeftRecord(layout, { state, how: 'leaving', clock });
}

/** Takes the note back: the managers did not take the leave. */
export async function unmarkLeaving(layout: DataDirLayout): Promise<void> {
  await rm(layout.leftJson, { force: true });
}

/** Whether node `nodeId` left (or is leaving) with `muster leave`, rather than being removed by an admin. */
export async function hasLeft(layout: DataDirLayout, nodeId: string): Promise<boolean> {
  const left = await readJsonFile(
    layout.leftJson,
    (value) => Value.Check(LeftRecord, value),
    () => 'is not a left.json',
  ).catch(() => undefined);
  return left?.nodeId === nodeId;
}

/**
 * The files of a manager that founds a cluster (init) or a restored one
 * (store restore), written before the store commits it: its key,
 * certificate and root, then node.json.
 */
export async function writeFounderFiles(
  keyStore: KeyStore,
  nodeJson: string,
  node: {
    keyPem: string;
    founded: { clusterId: string; nodeId: string; certificate: { certPem: string }; rootPem: string };
    advertiseAddr: string;
    listenAddr: string;
  },
): Promise<void> {
  const { founded } = node;
  await keyStore.ensureDirs();
  await keyStore.writePair({ keyPem: node.keyPem, certPem: founded.certificate.certPem, rootPem: founded.rootPem });
  await writeNodeState(nodeJson, {
    schema: NODE_STATE_SCHEMA,
    clusterId: founded.clusterId,
    nodeId: founded.nodeId,
    role: 'manager',
    managers: [node.advertiseAddr],
    listenAddr: node.listenAddr,
    advertiseAddr: node.advertiseAddr,
  });
}
