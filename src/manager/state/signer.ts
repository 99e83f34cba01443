/**
 * Who signs: the managers themselves with the root key from the store, or
 * external CAs they forward requests to. Either way the manager has already
 * decided the subject, role and SANs; the signer only signs them. The choice
 * is made here, once, from the CA record: callers see only a Signer.
 */
import type { Clock } from '../../core/clock.js';
import { isMusterError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Random } from '../../core/random.js';
import { loadSigningCa, rootIdentity, type SigningCa } from '../../pki/ca.js';
import { buildCrl } from '../../pki/crl.js';
import { issueCertificate } from '../../pki/issue.js';
import { seal, unseal } from '../../pki/seal.js';
import type { CaRecord, ExternalCaRecord, Sealed } from '../../store/records.js';
import type { ExternalCa } from '../../api/schemas.js';
import { CfsslSigner } from './cfssl-signer.js';
import type { CrlIssuer, Signer } from './signing.js';

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
export const SEAL_CONTEXT = { caKey: 'meta/ca key', authKey: 'meta/ca external authkey', adminKey: 'meta/ca admin key' } as const;

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
  return sealedSigningCa(ca.rootPem, ca.key, dataKey);
}

function sealedSigningCa(rootPem: string, key: Sealed | undefined, dataKey: Buffer): SigningCa | undefined {
  return key === undefined ? undefined : loadSigningCa({ certPem: rootPem, keyPem: unseal(dataKey, key, SEAL_CONTEXT.caKey).toString('utf8') });
}

/** The admin CA's signer (admin-ca.ts); its certificates never outlive the cross-certificate `chainPem` they are sent with. */
function adminSigningCa(admin: NonNullable<CaRecord['admin']>, chainPem: string, dataKey: Buffer): SigningCa {
  const ca = loadSigningCa({ certPem: admin.certPem, keyPem: unseal(dataKey, admin.key, SEAL_CONTEXT.adminKey).toString('utf8') });
  return { ...ca, notAfter: Math.min(ca.notAfter, rootIdentity(chainPem).notAfter) };
}

/**
 * The CRL issuers of a CA record: the current root, a rotation's new root,
 * and the roots a rotation replaced (until their certificates expire), each
 * whose key the record holds, once per key; none when an external CA holds
 * the current root's key. Every root a certificate may chain to needs its
 * own CRL: a verifier such as nginx (ssl_crl) looks the CRL up by the
 * issuer of each certificate and refuses one it finds none for.
 */
function crlIssuersOf(ca: CaRecord, deps: Pick<SignerDeps, 'dataKey' | 'logger'>): CrlIssuer[] {
  if (ca.key === undefined) return [];
  const roots: { rootPem: string; key: Sealed | undefined; until?: number }[] = [
    { rootPem: ca.rootPem, key: ca.key },
    ...(ca.rotation === undefined ? [] : [{ rootPem: ca.rotation.rootPem, key: ca.rotation.key }]),
    ...(ca.previous ?? []).map((p) => ({ rootPem: p.rootPem, key: p.key, until: p.until })),
  ];
  const issuers: CrlIssuer[] = [];
  for (const root of roots) {
    let signing: SigningCa | undefined;
    try {
      signing = sealedSigningCa(root.rootPem, root.key, deps.dataKey);
    } catch (error) {
      // A replaced root's key signs nothing but its CRL: an unreadable one costs that CRL, never the signer.
      if (root.until === undefined) throw error;
      deps.logger.warn(
        { code: isMusterError(error) ? error.code : 'INTERNAL' },
        "the key of a root a rotation replaced cannot be read; that root's CRL is not published",
      );
      continue;
    }
    if (signing === undefined) continue;
    const keyIdHex = signing.keyId.toString('hex');
    if (issuers.some((issuer) => issuer.keyIdHex === keyIdHex)) continue;
    issuers.push({ keyIdHex, ...(root.until === undefined ? {} : { until: root.until }), sign: (fields) => buildCrl({ ...fields, ca: signing }) });
  }
  // The admin CA issues API users' certificates, so it signs their CRL (last: the first CRL is the current root's, which nodes check).
  if (ca.admin !== undefined) {
    const admin = adminSigningCa(ca.admin, ca.admin.crossSignedPem, deps.dataKey);
    issuers.push({ keyIdHex: admin.keyId.toString('hex'), sign: (fields) => buildCrl({ ...fields, ca: admin }) });
  }
  return issuers;
}

/**
 * The signer for a CA record: while a root rotation runs, the new root's key,
 * each certificate sent with the cross-signed new root so that nodes still
 * trusting only the old root accept it; else the local key when the record
 * holds one, else its external CAs. Each root whose key the record holds
 * signs its own CRL (see crlIssuersOf).
 */
export function createSigner(ca: CaRecord, deps: SignerDeps): Signer {
  const current = currentSigningCa(ca, deps.dataKey);
  if (ca.rotation !== undefined) {
    const { rotation } = ca;
    const chain = rotation.crossSignedPem;
    // The admin CA issues under the new root once the new root cross-certified it (never when an external CA holds the new root's key).
    const admin =
      ca.admin === undefined || rotation.adminCrossSignedPem === undefined ? {} : { admin: { ...ca.admin, crossSignedPem: rotation.adminCrossSignedPem } };
    const next = createSigner(
      {
        schema: ca.schema,
        rootPem: rotation.rootPem,
        ...(rotation.key === undefined ? {} : { key: rotation.key }),
        ...(rotation.external === undefined ? {} : { external: rotation.external }),
        ...admin,
      },
      deps,
    );
    return {
      external: next.external,
      issue: async (request) => {
        const issued = await next.issue(request);
        return { ...issued, certPem: `${issued.certPem}${chain}` };
      },
      crlIssuers: crlIssuersOf(ca, deps),
      close: () => next.close(),
    };
  }
  if (current !== undefined) {
    // API users' certificates come from the admin CA when there is one, sent with its cross-certificate so the chain leads to the root.
    const admin = ca.admin === undefined ? undefined : { ca: adminSigningCa(ca.admin, ca.admin.crossSignedPem, deps.dataKey), chain: ca.admin.crossSignedPem };
    return {
      external: false,
      issue: async (request) => {
        if (request.role !== 'admin' || admin === undefined) return issueCertificate({ ...request, ca: current, clock: deps.clock, random: deps.random });
        const issued = issueCertificate({ ...request, ca: admin.ca, clock: deps.clock, random: deps.random });
        return { ...issued, certPem: `${issued.certPem}${admin.chain}` };
      },
      crlIssuers: crlIssuersOf(ca, deps),
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
