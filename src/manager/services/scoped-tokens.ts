/**
 * Scoped join tokens: extra tokens in the SWMTKN format (the same root
 * digest, their own secret) with a lifetime, a use count and labels that
 * every node joining with them gets. Only a hash of a token is stored; its
 * ID is derived from the token, so a join finds its record with one read.
 * A use is taken in the join's own transaction, which compares the token
 * record's version: N+5 joins at once with an N-use token, on any number of
 * managers, give exactly N certificates.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { iso, parseDuration } from '../../core/duration.js';
import { MusterError } from '../../core/errors.js';
import { rootDigest } from '../../pki/ca.js';
import { generateJoinToken } from '../../token/join-token.js';
import { KEYS, transact, type Tx } from '../../store/cluster-store.js';
import { SCHEMA_VERSION, type ScopedTokenRecord } from '../../store/records.js';
import type { ScopedTokenCreated, ScopedTokenList, ScopedTokenRequest, ScopedTokenView } from '../../api/schemas.js';
import { who, type Caller } from '../state/caller.js';
import type { SettingsDeps } from './settings.js';

/** Characters of a scoped token's ID. */
export const SCOPED_TOKEN_ID_LENGTH = 12;
/** How long an expired or used-up token stays listed before the janitor deletes it. */
export const ENDED_TOKEN_KEPT_MS = 24 * 3600_000;

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** The ID of a scoped token: derived from it (a one-way hash, so the ID tells nothing of the secret). */
export function scopedTokenId(token: string): string {
  return sha256(`muster scoped join token id\0${token}`).toString('hex').slice(0, SCOPED_TOKEN_ID_LENGTH);
}

/** Whether a token can still admit a node, and if not, why (given the current root's digest: a token of an earlier root has ended). */
export function tokenStatus(record: ScopedTokenRecord, now: number, rootDigestHex?: string): ScopedTokenView['status'] {
  if (record.expiresAt !== undefined && now >= record.expiresAt) return 'expired';
  if (rootDigestHex !== undefined && record.rootDigest !== undefined && record.rootDigest !== rootDigestHex) return 'expired';
  if (record.usesLeft !== undefined && record.usesLeft <= 0) return 'used';
  return 'active';
}

/** When an ended token stopped admitting (for the janitor), or undefined while it is active. */
export function tokenEndedAt(record: ScopedTokenRecord, now: number): number | undefined {
  const status = tokenStatus(record, now);
  if (status === 'expired') return record.expiresAt;
  if (status === 'used') return record.lastUsedAt ?? record.createdAt;
  return undefined;
}

function view(record: ScopedTokenRecord, now: number, rootDigestHex: string): ScopedTokenView {
  return {
    id: record.id,
    role: record.role,
    createdAt: iso(record.createdAt),
    ...(record.expiresAt === undefined ? {} : { expiresAt: iso(record.expiresAt) }),
    ...(record.uses === undefined ? {} : { uses: record.uses, usesLeft: record.usesLeft ?? 0 }),
    labels: record.labels,
    status: tokenStatus(record, now, rootDigestHex),
    ...(record.createdBy === undefined ? {} : { createdBy: record.createdBy }),
  };
}

/** What the scoped tokens work with: what the settings do, but the keys. */
export type ScopedTokensDeps = Omit<SettingsDeps, 'dataKeys' | 'nodeId' | 'autolockEnabled'>;

/** Creates, lists, removes and spends scoped join tokens. */
export class ScopedTokens {
  constructor(private readonly deps: ScopedTokensDeps) {}

  /** A new token; the answer is the only place its secret ever appears. */
  async create(request: ScopedTokenRequest, caller?: Caller): Promise<ScopedTokenCreated> {
    const { state, store, clock, random, logger, audit, membership } = this.deps;
    const ttlMs = request.ttl === undefined ? undefined : parseDuration(request.ttl);
    if (ttlMs !== undefined && ttlMs < 60_000)
      throw new MusterError('DURATION_INVALID', 'a token lives at least 1m', { hint: "use --ttl 1m or longer, e.g. '30m', '24h', '7d'" });
    const token = generateJoinToken(rootDigest(state.root.pem), random);
    const now = clock.now();
    const record: ScopedTokenRecord = {
      schema: SCHEMA_VERSION,
      id: scopedTokenId(token),
      role: request.role,
      secretHash: sha256(token).toString('hex'),
      createdAt: now,
      ...(ttlMs === undefined ? {} : { expiresAt: now + ttlMs }),
      ...(request.uses === undefined ? {} : { uses: request.uses, usesLeft: request.uses }),
      labels: request.labels ?? {},
      ...(caller === undefined ? {} : { createdBy: caller.nodeId }),
      rootDigest: state.root.digestHex,
    };
    await transact(store, async (tx) => {
      const ref = KEYS.scopedTokens.ref(record.id);
      if ((await tx.get(ref)) !== undefined) throw new MusterError('INTERNAL', 'a scoped token ID collided; try again');
      tx.put(ref, record);
    });
    logger.info({ tokenId: record.id, role: record.role, ...who(caller) }, 'scoped join token created');
    audit.record({
      action: 'join-token.create',
      caller,
      target: { token: record.id, role: record.role },
      result: 'ok',
      details: { ttl: request.ttl, uses: request.uses, labels: record.labels },
    });
    return { ...view(record, now, state.root.digestHex), token, managerAddr: membership.address };
  }

  /** Every scoped token, newest first, without secrets. */
  async list(): Promise<ScopedTokenList> {
    const now = this.deps.clock.now();
    const records = (await this.deps.store.list(KEYS.scopedTokens)).map((e) => e.value);
    records.sort((a, b) => b.createdAt - a.createdAt || a.id.localeCompare(b.id));
    return { tokens: records.map((r) => view(r, now, this.deps.state.root.digestHex)) };
  }

  /** One token, as the list shows it (never its secret); TOKEN_NOT_FOUND when there is none by that ID. */
  async get(id: string): Promise<ScopedTokenView> {
    const record = (await this.deps.store.get(KEYS.scopedTokens.ref(id)))?.value;
    if (record === undefined) throw new MusterError('TOKEN_NOT_FOUND', `no scoped join token ${id.slice(0, 64)}`);
    return view(record, this.deps.clock.now(), this.deps.state.root.digestHex);
  }

  /** Deletes a token: it is refused by every manager from the moment this answers. */
  async remove(id: string, caller?: Caller): Promise<ScopedTokenView> {
    const { store, clock, logger, audit } = this.deps;
    const removed = await transact(store, async (tx) => {
      const ref = KEYS.scopedTokens.ref(id);
      const record = await tx.get(ref);
      if (record === undefined) throw new MusterError('TOKEN_NOT_FOUND', `no scoped join token ${id.slice(0, 64)}`);
      tx.delete(ref);
      return record;
    }).catch((error: unknown) => {
      audit.record({ action: 'join-token.rm', caller, target: { token: id.slice(0, 64) }, result: error });
      throw error;
    });
    logger.info({ tokenId: id, ...who(caller) }, 'scoped join token removed');
    audit.record({ action: 'join-token.rm', caller, target: { token: id, role: removed.role }, result: 'ok' });
    return view(removed, clock.now(), this.deps.state.root.digestHex);
  }

  /** The record of `token` when it is a scoped token that can still admit a node (a read, no use taken). */
  async find(token: string): Promise<ScopedTokenRecord | undefined> {
    const entry = await this.deps.store.get(KEYS.scopedTokens.ref(scopedTokenId(token)));
    return entry !== undefined && this.admits(entry.value, token) ? entry.value : undefined;
  }

  /**
   * Takes one use of `token` inside a join's transaction: the commit fails if
   * another join took one meanwhile, and the retry reads the new count.
   */
  async spend(tx: Tx, token: string): Promise<ScopedTokenRecord | undefined> {
    const ref = KEYS.scopedTokens.ref(scopedTokenId(token));
    const record = await tx.get(ref);
    if (record === undefined || !this.admits(record, token)) return undefined;
    const spent: ScopedTokenRecord = {
      ...record,
      ...(record.usesLeft === undefined ? {} : { usesLeft: record.usesLeft - 1 }),
      lastUsedAt: this.deps.clock.now(),
    };
    tx.put(ref, spent);
    return spent;
  }

  private admits(record: ScopedTokenRecord, token: string): boolean {
    const matches = timingSafeEqual(Buffer.from(record.secretHash, 'hex'), sha256(token));
    return matches && tokenStatus(record, this.deps.clock.now(), this.deps.state.root.digestHex) === 'active';
  }
}
