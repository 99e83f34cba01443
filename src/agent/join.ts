/**
 * `muster join`: trust on first use, pinned by the token. The root is
 * fetched without verification and compared with the digest inside the
 * token before anything else happens; from then on TLS verifies against
 * that root and the server must hold a manager certificate. The token is
 * checked (preflight) before the node makes its key; the key is made here
 * and never leaves the node.
 */
import { X509Certificate, createPrivateKey, timingSafeEqual } from 'node:crypto';
import { retry } from '../core/backoff.js';
import type { Clock } from '../core/clock.js';
import { formatDuration } from '../core/duration.js';
import { MusterError, isMusterError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import { ROLE_OU } from '../core/roles.js';
import type { DataDirLayout } from '../config/paths.js';
import { ApiClient } from '../api/client.js';
import type { JoinRequest, ManagerBundle, NodeCertificateResponse } from '../api/schemas.js';
import { rootDigest } from '../pki/ca.js';
import { createCsr } from '../pki/csr.js';
import { LEAF_BACKDATE_MS } from '../pki/issue.js';
import { generateNodeKey } from '../pki/keys.js';
import { isIssuedBy, readBundle, readPeerCertificate } from '../pki/peer.js';
import { parseJoinToken } from '../token/join-token.js';
import { requireUnrevokedManager } from './crl.js';
import { KeyStore } from './key-store.js';
import { NODE_STATE_SCHEMA, readNodeState, writeNodeState, type NodeState } from './node-state.js';

/** What a join needs. */
export interface JoinParams {
  token: string;
  managerAddr: string;
  layout: DataDirLayout;
  hostname: string;
  labels?: Record<string, string>;
  /** Where this node will listen and advertise when it serves as a manager. */
  listenAddr?: string;
  advertiseAddr?: string;
  /** Runs once the token is known to make this node a manager, before a key is made (the CLI checks the ports it will serve on). */
  beforeManagerJoin?: () => Promise<void>;
  /** Where this node's etcd member is reached, should it join a managed store as a manager or be promoted later (kept in node.json), and the etcd that runs it. */
  storeMember?: { clientAddr: string; peerAddr: string; binary?: string };
  clock: Clock;
  random: Random;
  logger: Logger;
  /** Progress lines for a person waiting ("contacting the manager…"). */
  progress?: (line: string) => void;
  /** Attempts to reach the manager before giving up (default 5), backing off from `delayMs` (default 1 s). */
  retry?: { attempts: number; delayMs: number };
}

/** Failures a join may retry: nothing was committed, and trying again later can work. */
const RETRYABLE = new Set(['MANAGER_UNREACHABLE', 'EXTERNAL_CA_UNAVAILABLE', 'STORE_UNAVAILABLE', 'STORE_CONFLICT', 'RATE_LIMITED']);

/** Runs `fn`, retrying while the manager (or its store or external CA) cannot serve, and says when the next attempt is. */
function whileUnavailable<T>(params: JoinParams, fn: () => Promise<T>): Promise<T> {
  const { attempts, delayMs } = params.retry ?? { attempts: 5, delayMs: 1_000 };
  return retry(fn, {
    clock: params.clock,
    random: params.random,
    policy: { baseMs: delayMs, capMs: 60_000 },
    attempts,
    retryable: (error) => isMusterError(error) && RETRYABLE.has(error.code),
    // A manager that rate-limits this address says when to come back.
    delayFor: (error) => {
      const seconds = isMusterError(error, 'RATE_LIMITED') ? error.details?.retryAfterSeconds : undefined;
      return typeof seconds === 'number' ? seconds * 1000 : undefined;
    },
    onRetry: ({ error, attempt, nextAt }) =>
      params.progress?.(
        isMusterError(error, 'RATE_LIMITED')
          ? `the manager limits failed joins from this address and asks to wait until ${new Date(nextAt).toISOString()}; attempt ${attempt} of ${attempts} failed`
          : `${(error as Error).message}; attempt ${attempt} of ${attempts} failed, next attempt at ${new Date(nextAt).toISOString()}`,
      ),
  });
}

/** What a join leaves behind. */
export interface JoinResult {
  state: NodeState;
  notAfter: number;
  /** For a manager on a shared store: how to serve (the caller writes it under manager/). */
  bundle?: ManagerBundle;
}

/**
 * The trust bundle a manager hands out, when the node may take it: every
 * root in it is one the node holds already, or a new root that a held root
 * vouches for through a cross-signed copy (a root rotation). A manager's
 * word alone never adds a root: a removed manager's certificate could
 * otherwise plant its own.
 */
export function acceptBundle(offered: string, trusted: string, crossSignedPem = ''): boolean {
  const mine = readBundle(trusted);
  const fingerprints = new Set(mine.map((cert) => cert.fingerprint256));
  const theirs = readBundle(offered);
  const vouchers = readBundle(crossSignedPem);
  const vouched = (root: X509Certificate): boolean =>
    vouchers.some((cross) => cross.subject === root.subject && cross.publicKey.equals(root.publicKey) && mine.some((held) => isIssuedBy(cross, held)));
  return theirs.length > 0 && theirs.every((root) => fingerprints.has(root.fingerprint256) || vouched(root));
}

/**
 * Checks an issued certificate before it is stored: it chains to a root of
 * the bundle it came with, which shares a root with the one the node trusts,
 * holds our key, and names the node, role and cluster the manager said.
 * Used for joins and renewals alike.
 */
export function checkIssued(params: { response: NodeCertificateResponse; rootPem: string; keyPem: string; clock: Clock; expectNodeId?: string }): {
  notBefore: number;
  notAfter: number;
} {
  const { response } = params;
  const bad = (why: string): MusterError => new MusterError('ISSUED_CERT_INVALID', `the certificate returned by the manager ${why}`);
  if (response.rootCA !== params.rootPem && !acceptBundle(response.rootCA, params.rootPem, response.crossSigned))
    throw bad('comes with a root CA that no root this node trusts vouches for');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(response.certificate);
  } catch {
    throw bad('cannot be parsed');
  }
  let identity;
  try {
    identity = readPeerCertificate({ cert, roots: readBundle(response.rootCA), now: params.clock.now() });
  } catch (error) {
    if (isMusterError(error, 'CERT_NOT_YET_VALID')) {
      // The manager backdates certificates by an hour: its clock read about NotBefore + 1 h when it signed.
      const behindMs = Date.parse(cert.validFrom) + LEAF_BACKDATE_MS - params.clock.now();
      throw new MusterError(
        'CLOCK_SKEW',
        `the certificate the manager issued is not valid yet here: this machine's clock is behind the manager's by about ${formatDuration(Math.max(Math.round(behindMs / 60_000), 1) * 60_000)}`,
      );
    }
    throw bad(`does not verify against the pinned root (${error instanceof MusterError ? error.code : 'error'})`);
  }
  if (!cert.checkPrivateKey(createPrivateKey(params.keyPem))) throw bad('does not hold this node’s key');
  if (identity.nodeId !== response.nodeId || (params.expectNodeId !== undefined && identity.nodeId !== params.expectNodeId)) throw bad('names another node');
  if (identity.clusterId !== response.clusterId) throw bad('names another cluster');
  if (identity.role === undefined || ROLE_OU[identity.role] !== ROLE_OU[response.role]) throw bad('carries another role');
  return { notBefore: identity.notBefore, notAfter: identity.notAfter };
}

/** Joins a cluster and writes the node's identity into its data dir. */
export async function joinCluster(params: JoinParams): Promise<JoinResult> {
  const token = parseJoinToken(params.token);
  if ((await readNodeState(params.layout.nodeJson)) !== undefined) {
    throw new MusterError('CLUSTER_EXISTS', `the data dir ${params.layout.dataDir} already holds a node`, {
      hint: "restart it with 'muster run'; if it was removed or left, 'muster join --force' replaces it; or pick another --data-dir",
    });
  }
  const say = params.progress ?? (() => {});
  say(`contacting the manager at ${params.managerAddr}…`);
  const bootstrap = new ApiClient({ managers: [params.managerAddr], tls: {}, timeoutMs: 10_000 });
  const rootBytes = await whileUnavailable(params, () => bootstrap.fetchRootCaUnverified());
  const digest = rootDigest(rootBytes);
  if (digest.length !== token.digest.length || !timingSafeEqual(digest, token.digest)) {
    params.logger.warn({ manager: params.managerAddr }, 'join aborted: the root CA does not match the token');
    throw new MusterError('ROOT_DIGEST_MISMATCH', `the root CA served by ${params.managerAddr} does not match the join token; nothing was sent`);
  }
  const rootPem = rootBytes.toString('utf8');
  const client = new ApiClient({ managers: [params.managerAddr], tls: { rootPem } });
  let response: NodeCertificateResponse;
  let keyPem: string;
  try {
    // Before the token leaves: a removed or demoted manager's certificate still chains to the root, the CRL tells it apart.
    await whileUnavailable(params, () => requireUnrevokedManager(client, rootPem, params.clock));
    const { role } = await whileUnavailable(params, () => client.call('joinPreflight', { body: { token: params.token.trim() } }));
    if (role === 'manager') await params.beforeManagerJoin?.();
    say(`root CA verified against the token; joining as a ${role}; generating a key`);
    const key = await generateNodeKey();
    keyPem = key.privateKeyPem;
    const csr = createCsr({ privateKey: key.privateKey, subject: { commonName: params.hostname } });
    say('sending the certificate request');
    const body: JoinRequest = { token: params.token.trim(), csr, hostname: params.hostname };
    if (params.labels !== undefined) body.labels = params.labels;
    if (params.advertiseAddr !== undefined) body.managerAddr = params.advertiseAddr;
    if (role === 'manager' && params.storeMember !== undefined)
      body.storeMember = { clientAddr: params.storeMember.clientAddr, peerAddr: params.storeMember.peerAddr };
    response = await whileUnavailable(params, () => client.call('join', { body: body }));
  } finally {
    await client.close();
  }
  const validity = checkIssued({ response, rootPem, keyPem, clock: params.clock });
  const store = new KeyStore(params.layout);
  await store.ensureDirs();
  await store.writePair({ keyPem, certPem: response.certificate, rootPem: response.rootCA });
  const state: NodeState = {
    schema: NODE_STATE_SCHEMA,
    clusterId: response.clusterId,
    nodeId: response.nodeId,
    role: response.role,
    managers: response.managers.length > 0 ? response.managers : [params.managerAddr],
    ...(params.listenAddr === undefined ? {} : { listenAddr: params.listenAddr }),
    ...(params.advertiseAddr === undefined ? {} : { advertiseAddr: params.advertiseAddr }),
    ...(params.storeMember === undefined ? {} : { storeMember: params.storeMember }),
  };
  await writeNodeState(params.layout.nodeJson, state);
  params.logger.info(
    { nodeId: state.nodeId, role: state.role, clusterId: state.clusterId, notAfter: response.notAfter },
    `joined cluster ${state.clusterId} as ${state.role} ${state.nodeId}; certificate valid until ${response.notAfter}`,
  );
  return { state, notAfter: validity.notAfter, ...(response.manager === undefined ? {} : { bundle: response.manager }) };
}
