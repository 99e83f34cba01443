/**
 * Who signs: the manager itself with the root key it holds, or an external
 * CA it forwards requests to. Either way the manager has already decided
 * the subject, role and SANs; the issuer only signs them.
 */
import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import type { CertRole } from '../core/roles.js';
import type { SigningCa } from '../pki/ca.js';
import type { ParsedCsr } from '../pki/csr.js';
import { issueCertificate, type IssuedCertificate } from '../pki/issue.js';

/** A signing request, after the manager has chosen every identity field. */
export interface SignRequest {
  csrPem: string;
  csr: ParsedCsr;
  role: CertRole;
  commonName: string;
  clusterId: string;
  /** Extra SANs (managers: the advertise host). */
  hosts: readonly string[];
  validityMs: number;
}

/** Signs certificates under the cluster root. */
export interface CertificateIssuer {
  /** True when the root key is outside the manager. */
  readonly external: boolean;
  issue(request: SignRequest): Promise<IssuedCertificate>;
}

/** Signs locally with the root key from the store. */
export class LocalIssuer implements CertificateIssuer {
  readonly external = false;

  constructor(
    private readonly ca: SigningCa,
    private readonly clock: Clock,
    private readonly random: Random,
  ) {}

  async issue(request: SignRequest): Promise<IssuedCertificate> {
    return issueCertificate({
      ca: this.ca,
      csr: request.csr,
      role: request.role,
      commonName: request.commonName,
      clusterId: request.clusterId,
      hosts: request.hosts,
      validityMs: request.validityMs,
      clock: this.clock,
      random: this.random,
    });
  }
}
