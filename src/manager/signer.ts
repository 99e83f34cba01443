/**
 * Who signs: the managers themselves with the root key from the store, or
 * external CAs they forward requests to. Either way the manager has already
 * decided the subject, role and SANs; the signer only signs them. The choice
 * is made here, once, from the CA record: callers see only a Signer.
 */
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import type { CertRole } from '../core/roles.js';
import { loadSigningCa, type SigningCa } from '../pki/ca.js';
import { buildCrl, type CrlFields } from '../pki/crl.js';
import type { ParsedCsr } from '../pki/csr.js';
import { issueCertificate, type IssuedCertificate } from '../pki/issue.js';
import { seal, unseal } from '../pki/seal.js';
import type { CaRecord, ExternalCaRecord } from '../store/records.js';
import type { ExternalCa } from '../api/schemas.js';
import { CfsslSigner } from './cfssl-signer.js';

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
  /** The CRL Distribution Point to write in (managers' own signing only). */
  crlUrl?: string;
}

/** Signs certificates under the cluster root. */
export interface Signer {
  /** True when the root key is outside the managers. */
  readonly external: boolean;
  issue(request: SignRequest): Promise<IssuedCertificate>;
  /** Signs a CRL under the root; absent when the root key is outside the managers (see revocation.ts). */
  signCrl?(fields: Omit<CrlFields, 'ca'>): Buffer;
  /** Releases connections. */
  close(): Promise<void>;
}

/** What a signer is built from. */
export interface SignerDeps {
  clock: Clock;
  random: Random;
  logger: Logger;
  /** The cluster data key the CA key and auth keys are sealed under. */
  dataKey: Buffer;
  /** The manager's own certificate, presented to external CAs (mutual TLS). */
  clientTls?: () => { certPem: string; keyPem: string } | undefined;
}

/** Where sealed secrets of the CA record are bound (the AEAD's additional data). */
export const SEAL_CONTEXT = { caKey: 'meta/ca key', authKey: 'meta/ca external authkey' } as const;

/** External CAs as the store keeps them: the authsign keys sealed under the data key. */
export function sealExternalCas(dataKey: Buffer, list: readonly ExternalCa[]): ExternalCaRecord[] {
  return list.map((external) => ({
    url: external.url,
    ...(external.cacertPem === undefined ? {} : { cacertPem: external.cacertPem }),
    ...(external.authKeyHex === undefined ? {} : { authKey: seal(dataKey, external.authKeyHex, SEAL_CONTEXT.authKey) }),
  }));
}

/** The current root's signing CA, when the managers hold its key. */
export function currentSigningCa(ca: CaRecord, dataKey: Buffer): SigningCa | undefined {
  return ca.key === undefined ? undefined : loadSigningCa({ certPem: ca.rootPem, keyPem: unseal(dataKey, ca.key, SEAL_CONTEXT.caKey).toString('utf8') });
}

/**
 * The signer for a CA record: while a root rotation runs, the new root's key,
 * each certificate sent with the cross-signed new root so that nodes still
 * trusting only the old root accept it; else the local key when the record
 * holds one, else its external CAs. CRLs stay signed by the current root
 * until the rotation completes.
 */
export function createSigner(ca: CaRecord, deps: SignerDeps): Signer {
  const current = currentSigningCa(ca, deps.dataKey);
  if (ca.rotation !== undefined) {
    const { rotation } = ca;
    const chain = rotation.crossSignedPem;
    const next = createSigner({ schema: ca.schema, rootPem: rotation.rootPem, ...(rotation.key === undefined ? {} : { key: rotation.key }), ...(rotation.external === undefined ? {} : { external: rotation.external }) }, deps);
    return {
      external: next.external,
      issue: async (request) => {
        const issued = await next.issue(request);
        return { ...issued, certPem: `${issued.certPem}${chain}` };
      },
      ...(current === undefined ? {} : { signCrl: (fields: Omit<CrlFields, 'ca'>) => buildCrl({ ...fields, ca: current }) }),
      close: () => next.close(),
    };
  }
  if (current !== undefined) {
    return {
      external: false,
      issue: async (request) => issueCertificate({ ...request, ca: current, clock: deps.clock, random: deps.random }),
      signCrl: (fields) => buildCrl({ ...fields, ca: current }),
      close: async () => {},
    };
  }
  const cas = (ca.external ?? []).map((external) => ({
    url: external.url,
    ...(external.cacertPem === undefined ? {} : { cacertPem: external.cacertPem }),
    ...(external.authKey === undefined ? {} : { authKeyHex: unseal(deps.dataKey, external.authKey, SEAL_CONTEXT.authKey).toString('utf8') }),
  }));
  return new CfsslSigner(cas, ca.rootPem, { logger: deps.logger, ...(deps.clientTls === undefined ? {} : { clientTls: deps.clientTls }) });
}
