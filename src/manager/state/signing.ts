/** What signs certificates and CRLs, as the rest of the manager sees it: the interfaces signer.ts (local or cfssl) implements. */
import type { CertRole } from '../../core/roles.js';
import type { CrlFields } from '../../pki/crl.js';
import type { ParsedCsr } from '../../pki/csr.js';
import type { IssuedCertificate } from '../../pki/issue.js';

/** A signing request, after the manager has chosen every identity field. */
export interface SignRequest {
  csrPem: string;
  csr: ParsedCsr;
  role: CertRole;
  commonName: string;
  clusterId: string;
  /** Extra SANs (managers: the advertise host; a service certificate: its names). */
  hosts: readonly string[];
  /** A service certificate for a client (clientAuth only). */
  clientOnly?: boolean;
  validityMs: number;
  /** Where the CRLs are published; each certificate names its issuer's under it (managers' own signing only, see IssueRequest). */
  crlUrl?: string;
}

/** A root whose key the managers hold, signing the CRL of the certificates under it. */
export interface CrlIssuer {
  /** The root's key identifier, hex: its CRL's path is /v1/crl/<keyIdHex>, which each certificate it issues names. */
  keyIdHex: string;
  /** Until when certificates under it count (a root a rotation replaced); absent: for as long as it is a root. */
  until?: number;
  sign(fields: Omit<CrlFields, 'ca'>): Buffer;
}

/** Signs certificates under the cluster root. */
export interface Signer {
  /** True when the root key is outside the managers. */
  readonly external: boolean;
  issue(request: SignRequest): Promise<IssuedCertificate>;
  /**
   * The roots that sign a CRL, the current root first: every root the
   * cluster trusts whose key the managers hold. Empty when no such root
   * signs (an external CA holds the key: see services/revocations.ts).
   */
  readonly crlIssuers: readonly CrlIssuer[];
  /** Releases connections. */
  close(): Promise<void>;
}
