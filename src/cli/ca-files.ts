/** Reading the CA material an operator hands to init or update: --ca-cert/--ca-key files and --external-ca specs. */
import { readFile } from 'node:fs/promises';
import type { Clock } from '../core/clock.js';
import { MusterError, type ErrorCode } from '../core/errors.js';
import { canonicalRootPem, importRootCa, importRootCertificate } from '../pki/ca.js';
import { parseExternalCaFlag } from '../config/external-ca.js';
import type { ExternalCaSpec } from '../manager/services/founding.js';

async function readFileOr(file: string, code: ErrorCode): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    throw new MusterError(code, `cannot read ${file}`);
  }
}

/** Reads --external-ca flags, with their cacert files; `insecure` (--external-ca-insecure) lets http:// URLs through. */
export async function readExternalCas(flags: readonly string[], insecure = false): Promise<ExternalCaSpec[]> {
  if (insecure && flags.length === 0) throw new MusterError('USAGE', '--external-ca-insecure goes with --external-ca');
  const cas: ExternalCaSpec[] = [];
  for (const text of flags) {
    const flag = parseExternalCaFlag(text, { insecure });
    const ca: ExternalCaSpec = { url: flag.url };
    if (flag.cacertFile !== undefined) ca.cacertPem = await readFileOr(flag.cacertFile, 'USAGE');
    if (flag.authKeyHex !== undefined) ca.authKeyHex = flag.authKeyHex;
    cas.push(ca);
  }
  return cas;
}

/** The root to found with: none (muster founds one), cert + key, or cert alone with external CAs. */
export async function readRoot(
  flags: { caCert?: string; caKey?: string; externalCa?: string[]; externalCaInsecure?: boolean },
  clock: Clock,
): Promise<{ root?: { certPem: string; keyPem?: string }; externalCAs?: ExternalCaSpec[] }> {
  const external = flags.externalCa ?? [];
  if (flags.externalCaInsecure === true && external.length === 0) throw new MusterError('USAGE', '--external-ca-insecure goes with --external-ca');
  if (external.length > 0) {
    if (flags.caCert === undefined)
      throw new MusterError('USAGE', '--external-ca needs --ca-cert, the root the external CA signs with', {
        hint: 'muster init --external-ca protocol=cfssl,url=https://ca:8888 --ca-cert root.pem',
      });
    if (flags.caKey !== undefined) throw new MusterError('USAGE', 'with --external-ca the root key stays with the external CA; drop --ca-key');
    const certPem = canonicalRootPem(await readFileOr(flags.caCert, 'CA_CERT_INVALID'));
    importRootCertificate(certPem, clock); // each failure has its own code
    return { root: { certPem }, externalCAs: await readExternalCas(external, flags.externalCaInsecure === true) };
  }
  if (flags.caCert === undefined && flags.caKey === undefined) return {};
  if (flags.caCert === undefined || flags.caKey === undefined) {
    throw new MusterError('USAGE', '--ca-cert and --ca-key go together', {
      hint: 'pass both, or neither to found a new root, or --ca-cert with --external-ca',
    });
  }
  const material = { certPem: canonicalRootPem(await readFileOr(flags.caCert, 'CA_CERT_INVALID')), keyPem: await readFileOr(flags.caKey, 'CA_KEY_INVALID') };
  importRootCa(material, clock); // validates; each failure has its own code
  return { root: material };
}
