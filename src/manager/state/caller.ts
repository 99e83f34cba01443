/** The verified caller of a request, as the services see it (the authoriser, in http/, makes one from a certificate). */
import type { CertRole } from '../../core/roles.js';
import type { PeerIdentity } from '../../pki/peer.js';
import type { NodeRecord } from '../../store/records.js';

/** A verified caller: the identity its certificate carries, and its node record if it is a node. */
export interface Caller extends PeerIdentity {
  role: CertRole;
  node: NodeRecord | undefined;
  /** The certificate had expired, and was accepted within the renewal grace (renewal only). */
  expired: boolean;
  /** Issued by the root that signs now; false for a certificate from a root a rotation is replacing (or replaced). */
  fromSigningRoot: boolean;
}

/** Who did something, for the logs: the caller's CN and role (never anything secret). */
export function who(caller: Caller | undefined): { by?: string; byRole?: CertRole } {
  return caller === undefined ? {} : { by: caller.nodeId, byRole: caller.role };
}
