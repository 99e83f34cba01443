/**
 * The classic join tokens at rest (DESIGN §10: nothing secret in clear in any
 * store): each kept as its SHA-256, which a join is checked against, and
 * sealed under the cluster data key, which only `join-token` display and a
 * root rotation (the token's digest part names the root) open. Stores written
 * before sealing hold the tokens in clear; a manager seals them when it
 * starts ({@link sealClearTokens}).
 */
import { createHash } from 'node:crypto';
import { MusterError } from '../../core/errors.js';
import type { NodeRole } from '../../core/roles.js';
import { seal, unseal } from '../../pki/seal.js';
import { KEYS, transact, type ClusterStore } from '../../store/cluster-store.js';
import type { StoredToken, TokensRecord } from '../../store/records.js';

/** The sealing context of each role's token: a sealed token cannot be moved to the other role. */
function context(role: NodeRole): string {
  return `${KEYS.tokens.key} ${role}`;
}

/** SHA-256 of a token's text, as joins are checked against it. */
export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** A token as the store keeps it: hashed, and sealed under the data key. */
export function storeToken(dataKey: Buffer, role: NodeRole, token: string): StoredToken {
  return { hash: hashToken(token).toString('hex'), sealed: seal(dataKey, token, context(role)) };
}

/** The hash a join is checked against (a store from before sealing holds the token itself). */
export function storedTokenHash(stored: StoredToken | string): Buffer {
  return typeof stored === 'string' ? hashToken(stored) : Buffer.from(stored.hash, 'hex');
}

/** The token's text, opened with the data key; STATE_CORRUPT if it was tampered with or does not match its hash. */
export function openToken(dataKey: Buffer, role: NodeRole, stored: StoredToken | string): string {
  if (typeof stored === 'string') return stored;
  const token = unseal(dataKey, stored.sealed, context(role)).toString('utf8');
  if (!hashToken(token).equals(Buffer.from(stored.hash, 'hex')))
    throw new MusterError('STATE_CORRUPT', `the sealed ${role} join token does not match its hash`);
  return token;
}

/** Both tokens as the store keeps them. */
export function storeTokens(dataKey: Buffer, tokens: Readonly<Record<NodeRole, string>>): Pick<TokensRecord, 'worker' | 'manager'> {
  return { worker: storeToken(dataKey, 'worker', tokens.worker), manager: storeToken(dataKey, 'manager', tokens.manager) };
}

/** True when the record still holds a token in clear. */
export function hasClearToken(tokens: TokensRecord): boolean {
  return typeof tokens.worker === 'string' || typeof tokens.manager === 'string';
}

/** Seals the tokens of a store written before sealing, in one transaction; true when it changed the store. */
export async function sealClearTokens(store: ClusterStore, dataKey: Buffer): Promise<boolean> {
  return transact(store, async (tx) => {
    const tokens = await tx.get(KEYS.tokens);
    if (tokens === undefined || !hasClearToken(tokens)) return false;
    tx.put(KEYS.tokens, {
      ...tokens,
      ...storeTokens(dataKey, { worker: openToken(dataKey, 'worker', tokens.worker), manager: openToken(dataKey, 'manager', tokens.manager) }),
    });
    return true;
  });
}
