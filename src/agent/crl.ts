/**
 * A node's check of the cluster's CRL: fetched from the manager it talks to,
 * verified against the pinned root, fresh by the node's clock, and the
 * manager's own certificate must not be on it. A removed manager keeps a
 * certificate that still chains to the root; without this check it could
 * pose as a manager to joining nodes and collect their tokens.
 */
import type { ApiClient } from '../api/client.js';
import { revokedManager } from '../api/client.js';
import type { Clock } from '../core/clock.js';
import { MusterError } from '../core/errors.js';
import { parseCrl, type ParsedCrl } from '../pki/crl.js';
import { hasCrlDistributionPoint, readBundle } from '../pki/peer.js';

/** A checked CRL, and whether the manager that served it is on it. */
export interface CheckedCrl {
  /** Undefined when the cluster publishes none. */
  crl: ParsedCrl | undefined;
  managerRevoked: boolean;
}

/**
 * The CRL of the manager `client` talks to, checked; undefined when the
 * cluster publishes none (an external CA signs, and the manager's
 * certificate names no CRL). A manager whose certificate names a CRL but
 * serves none, or a stale or forged one, is refused: a removed manager
 * would rather not show the list it is on.
 */
export async function fetchCheckedCrl(client: ApiClient, rootPem: string, clock: Clock): Promise<CheckedCrl> {
  const { der, peer } = await client.fetchCrl();
  const address = client.address;
  const names = peer !== undefined && hasCrlDistributionPoint(peer.raw);
  if (der === undefined) {
    if (!names) return { crl: undefined, managerRevoked: false };
    throw new MusterError('CRL_INVALID', `the manager at ${address} serves no CRL, though its certificate names one`);
  }
  // Signed by one of the trusted roots (the old one, while a root rotation runs).
  let crl: ParsedCrl | undefined;
  let refusal: unknown;
  for (const root of readBundle(rootPem)) {
    try {
      crl = parseCrl(der, root);
      break;
    } catch (error) {
      refusal = error;
    }
  }
  if (crl === undefined)
    throw new MusterError('CRL_INVALID', `the CRL from ${address} is not one the cluster root signed: ${(refusal as Error | undefined)?.message ?? 'no root'}`);
  const now = clock.now();
  // Only staleness counts: a CRL "from the future" (this clock is behind) cannot be forged, a stale one can be replayed.
  if (now >= crl.nextUpdate) {
    throw new MusterError('CRL_INVALID', `the CRL from ${address} is stale: its next update was due ${new Date(crl.nextUpdate).toISOString()}`, {
      hint: "a removed manager may be replaying an old CRL; or this machine's clock is ahead (check NTP: 'timedatectl set-ntp true')",
    });
  }
  return { crl, managerRevoked: peer !== undefined && crl.serials.has(peer.serial) };
}

/** For a node about to join: the manager's CRL, checked, and the manager refused when it is on it. */
export async function requireUnrevokedManager(client: ApiClient, rootPem: string, clock: Clock): Promise<ParsedCrl | undefined> {
  const checked = await fetchCheckedCrl(client, rootPem, clock);
  if (checked.managerRevoked) {
    await client.close();
    throw revokedManager(client.address);
  }
  return checked.crl;
}
