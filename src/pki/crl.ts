/**
 * Certificate revocation lists (RFC 5280 §5): the cluster CA signs an X.509
 * v2 CRL of revoked node certificates, and readers check it against the root
 * before believing a serial in it. Freshness (nextUpdate against a clock) is
 * the caller's business: this file takes no time.
 */
import { verify, type X509Certificate } from 'node:crypto';
import type { SigningCa } from './ca.js';
import { extension } from './certificate.js';
import { DerNode, OID, TAG, bits, explicit, implicitPrimitive, readPemBlocks, seq, smallInt, time, tlv, uint } from './der.js';
import { signWith } from './signature.js';

/** Why a certificate was revoked (the CRLReason values muster writes, RFC 5280 §5.3.1). */
export type RevocationReason = 'unspecified' | 'keyCompromise' | 'affiliationChanged' | 'superseded' | 'cessationOfOperation' | 'privilegeWithdrawn';

/** One revoked certificate. */
export interface CrlEntry {
  /** Upper-case hex as `serialHex()` and `X509Certificate.serialNumber` give it, read as an unsigned big-endian number. */
  serial: string;
  /** When it was revoked, in ms (written to whole seconds). */
  revokedAt: number;
  reason: RevocationReason;
}

/** Inputs to {@link buildCrl}. */
export interface CrlFields {
  ca: Pick<SigningCa, 'key' | 'algorithm' | 'subjectDer' | 'keyId'>;
  /** The CRLNumber: non-negative, increasing with each CRL the CA issues. */
  number: number;
  thisUpdate: number;
  nextUpdate: number;
  entries: CrlEntry[];
}

/** A CRL whose structure, issuer and signature checked out. */
export interface ParsedCrl {
  number: number;
  thisUpdate: number;
  nextUpdate: number;
  /** The revoked serials, upper-case hex without a sign byte. */
  serials: Set<string>;
  entries: CrlEntry[];
  /** The issuer Name DER, as written in the CRL. */
  issuerDer: Buffer;
}

/** The PEM label of a CRL (RFC 7468 §6). */
export const CRL_PEM_LABEL = 'X509 CRL';

/** Why {@link parseCrl} refused a CRL; the caller maps it to its own error code. */
export class CrlError extends Error {
  override readonly name = 'CrlError';
}

const CRL_NUMBER_OID = '2.5.29.20';
const REASON_CODE_OID = '2.5.29.21';
const BOOLEAN = 0x01;
const ENUMERATED = 0x0a;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;
const CRL_EXTENSIONS = 0xa0; // [0] EXPLICIT
const V2 = smallInt(1);

const REASON_CODES: Readonly<Record<RevocationReason, number>> = {
  unspecified: 0,
  keyCompromise: 1,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  privilegeWithdrawn: 9,
};

const REASONS_BY_CODE: ReadonlyMap<number, RevocationReason> = new Map(
  Object.entries(REASON_CODES).map(([reason, code]) => [code, reason as RevocationReason]),
);

/** The algorithms muster signs with; a CRL from its CA uses one of these. */
const SIGNATURE_OIDS: Readonly<Record<string, { hash: 'sha256' | 'sha384'; family: 'ec' | 'rsa' }>> = {
  [OID.ecdsaWithSha256]: { hash: 'sha256', family: 'ec' },
  [OID.ecdsaWithSha384]: { hash: 'sha384', family: 'ec' },
  [OID.sha256WithRsa]: { hash: 'sha256', family: 'rsa' },
};

const malformed = (why: string): CrlError => new CrlError(`the CRL is malformed: ${why}`);

// Building.

/**
 * Builds and signs a v2 CRL (RFC 5280 §5.1):
 *   CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
 *   TBSCertList ::= SEQUENCE { version INTEGER(1), signature AlgorithmIdentifier, issuer Name,
 *     thisUpdate Time, nextUpdate Time,
 *     revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER, revocationDate Time,
 *       crlEntryExtensions Extensions OPTIONAL } OPTIONAL (absent when empty),
 *     crlExtensions [0] EXPLICIT Extensions (AuthorityKeyIdentifier and CRLNumber, §5.2.1–5.2.3) }
 * Entries are sorted by serial so the same list always gives the same TBS.
 */
export function buildCrl(fields: CrlFields): Buffer {
  const { ca } = fields;
  const revoked = sortedEntries(fields.entries).map(revokedCertificate);
  const tbs = seq(
    V2,
    ca.algorithm.identifier,
    ca.subjectDer,
    time(fields.thisUpdate),
    time(fields.nextUpdate),
    ...(revoked.length === 0 ? [] : [seq(...revoked)]),
    explicit(
      0,
      seq(extension(OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, ca.keyId))), extension(CRL_NUMBER_OID, false, crlNumber(fields.number))),
    ),
  );
  return seq(tbs, ca.algorithm.identifier, bits(signWith(ca.algorithm, tbs, ca.key)));
}

/** The serial as minimal unsigned big-endian bytes; throws on anything but hex. */
function serialBytes(serial: string): Buffer {
  if (!/^[0-9A-Fa-f]+$/.test(serial)) throw new RangeError(`a CRL serial must be hex, got '${serial}'`);
  const bytes = Buffer.from(serial.length % 2 === 0 ? serial : `0${serial}`, 'hex');
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  return bytes.subarray(start);
}

/** Entries with their serial bytes, in numeric order of serial; a serial listed twice is a caller bug. */
function sortedEntries(entries: readonly CrlEntry[]): { entry: CrlEntry; serial: Buffer }[] {
  const sorted = entries
    .map((entry) => ({ entry, serial: serialBytes(entry.serial) }))
    .sort((a, b) => a.serial.length - b.serial.length || Buffer.compare(a.serial, b.serial));
  sorted.forEach((item, i) => {
    if (i > 0 && item.serial.equals(sorted[i - 1]!.serial)) throw new RangeError(`serial ${item.entry.serial} is listed twice`);
  });
  return sorted;
}

/** One revokedCertificates element; reasonCode is left out for 'unspecified', as RFC 5280 §5.3.1 asks. */
function revokedCertificate({ entry, serial }: { entry: CrlEntry; serial: Buffer }): Buffer {
  const code = REASON_CODES[entry.reason];
  const extensions = code === 0 ? [] : [seq(extension(REASON_CODE_OID, false, tlv(ENUMERATED, Buffer.of(code))))];
  return seq(uint(serial), time(entry.revokedAt), ...extensions);
}

/** CRLNumber INTEGER (RFC 5280 §5.2.3); smallInt stops at 32 bits, so go through hex. */
function crlNumber(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`a CRL number must be a non-negative integer, got ${n}`);
  const hex = n.toString(16);
  return uint(Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex'));
}

// Parsing.

/** The TBSCertList fields, located but not yet trusted. */
interface TbsParts {
  algorithm: DerNode;
  issuer: DerNode;
  thisUpdate: DerNode;
  nextUpdate: DerNode;
  revoked: DerNode | undefined;
  extensions: DerNode | undefined;
}

/**
 * Reads a DER or PEM CRL (layout above {@link buildCrl}) and returns its
 * contents once it is a v2 CRL named for `issuer`'s subject, signed by
 * `issuer`'s key, with matching inner and outer AlgorithmIdentifiers.
 * Throws {@link CrlError} otherwise. Does not judge freshness.
 */
export function parseCrl(input: Buffer | string, issuer: X509Certificate): ParsedCrl {
  try {
    return readCrl(input, issuer);
  } catch (cause) {
    // forge's OID decoder and friends throw their own errors on junk: one type for callers.
    if (cause instanceof CrlError) throw cause;
    throw new CrlError('the CRL is malformed: it cannot be decoded', { cause });
  }
}

/** The checks {@link parseCrl} documents, throwing whatever fails first. */
function readCrl(input: Buffer | string, issuer: X509Certificate): ParsedCrl {
  const list = DerNode.parse(crlDer(input), malformed).expect(TAG.SEQUENCE, 'the CertificateList');
  const parts = list.children();
  if (parts.length !== 3) throw malformed('expected tbsCertList, signatureAlgorithm and signatureValue');
  const tbs = list.child(0, TAG.SEQUENCE, 'tbsCertList');
  const algorithm = list.child(1, TAG.SEQUENCE, 'signatureAlgorithm');
  const signature = list.child(2, TAG.BIT_STRING, 'signatureValue');
  const fields = readTbs(tbs);
  if (!fields.algorithm.bytes.equals(algorithm.bytes)) throw new CrlError('the CRL signature algorithm differs inside and outside the signed part');
  if (!fields.issuer.bytes.equals(subjectDerOf(issuer))) throw new CrlError("the CRL issuer is not the CA certificate's subject");
  checkSignature({ tbs, algorithm, signature, issuer });
  const thisUpdate = readTime(fields.thisUpdate);
  const nextUpdate = readTime(fields.nextUpdate);
  if (nextUpdate < thisUpdate) throw malformed('nextUpdate is before thisUpdate');
  const entries = fields.revoked === undefined ? [] : readEntries(fields.revoked);
  return {
    number: readCrlExtensions(fields.extensions),
    thisUpdate,
    nextUpdate,
    serials: new Set(entries.map((e) => e.serial)),
    entries,
    issuerDer: Buffer.from(fields.issuer.bytes),
  };
}

/** DER from DER bytes, or from text (or bytes) holding exactly one X509 CRL PEM block. */
function crlDer(input: Buffer | string): Buffer {
  if (typeof input !== 'string' && !input.subarray(0, 64).toString('latin1').trimStart().startsWith('-----BEGIN')) return input;
  const blocks = readPemBlocks(typeof input === 'string' ? input : input.toString('utf8'));
  if (blocks.length !== 1) throw new CrlError(`expected one ${CRL_PEM_LABEL} PEM block, found ${blocks.length}`);
  const block = blocks[0]!;
  if (block.label !== CRL_PEM_LABEL) throw new CrlError(`expected an ${CRL_PEM_LABEL} PEM block, got ${block.label}`);
  return block.der;
}

/** Splits the TBSCertList by position and tag; requires v2 and a nextUpdate. */
function readTbs(tbs: DerNode): TbsParts {
  const fields = tbs.children();
  const at = (i: number, tags: readonly number[], what: string): DerNode => {
    const field = fields[i];
    if (field === undefined || !tags.includes(field.tag)) throw malformed(`${what} is missing or has the wrong type`);
    return field;
  };
  const version = fields[0]?.tag === TAG.INTEGER ? fields[0].content : undefined; // absent in a v1 CRL
  if (version?.length !== 1 || version[0] !== 1) throw new CrlError('the CRL is not version 2');
  const times = [UTC_TIME, GENERALIZED_TIME];
  const parts: TbsParts = {
    algorithm: at(1, [TAG.SEQUENCE], 'signature'),
    issuer: at(2, [TAG.SEQUENCE], 'issuer'),
    thisUpdate: at(3, times, 'thisUpdate'),
    nextUpdate: at(4, times, 'nextUpdate'),
    revoked: undefined,
    extensions: undefined,
  };
  let next = 5;
  if (fields[next]?.tag === TAG.SEQUENCE) parts.revoked = fields[next++];
  if (fields[next]?.tag === CRL_EXTENSIONS) parts.extensions = fields[next++];
  if (next !== fields.length) throw malformed('unexpected fields in tbsCertList');
  return parts;
}

/** The subject Name DER of a certificate: tbsCertificate field 5 after the optional [0] version (RFC 5280 §4.1). */
function subjectDerOf(cert: X509Certificate): Buffer {
  const fail = (why: string): CrlError => new CrlError(`the CA certificate cannot be read: ${why}`);
  const fields = DerNode.parse(cert.raw, fail).child(0, TAG.SEQUENCE, 'tbsCertificate').children();
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = fields[offset + 4];
  if (subject?.tag !== TAG.SEQUENCE) throw fail('no subject');
  return subject.bytes;
}

/** Verifies the signature over the TBS bytes as received, with an algorithm muster signs with. */
function checkSignature(params: { tbs: DerNode; algorithm: DerNode; signature: DerNode; issuer: X509Certificate }): void {
  const algorithmParts = params.algorithm.children();
  const id = params.algorithm.child(0, TAG.OID, 'the signature algorithm OID').oid();
  const alg = SIGNATURE_OIDS[id];
  if (alg === undefined) throw new CrlError(`the CRL signature algorithm ${id} is not supported`);
  const paramsOk =
    alg.family === 'ec' ? algorithmParts.length === 1 : algorithmParts.length === 1 || (algorithmParts.length === 2 && algorithmParts[1]!.tag === TAG.NULL);
  if (!paramsOk) throw malformed('unexpected signature algorithm parameters');
  const publicKey = params.issuer.publicKey;
  if (publicKey.asymmetricKeyType !== alg.family)
    throw new CrlError(`the CRL signature algorithm does not fit the CA's ${publicKey.asymmetricKeyType ?? 'unknown'} key`);
  const content = params.signature.content;
  let ok = false;
  if (content.length >= 2 && content[0] === 0) {
    try {
      ok = verify(alg.hash, params.tbs.bytes, publicKey, content.subarray(1));
    } catch {
      ok = false;
    }
  }
  if (!ok) throw new CrlError('the CRL signature does not verify with the CA key');
}

/** UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (the forms RFC 5280 §5.1.2.4 allows), in ms. */
function readTime(node: DerNode): number {
  const text = node.content.toString('latin1');
  const match = (node.tag === UTC_TIME ? /^(\d{2})(\d{10})Z$/ : /^(\d{4})(\d{10})Z$/).exec(text);
  const yearText = match?.[1] ?? '';
  const rest = match?.[2] ?? '';
  const short = Number(yearText);
  const year = yearText.length === 2 ? (short >= 50 ? 1900 : 2000) + short : short;
  const [mo, d, h, mi, s] = [0, 2, 4, 6, 8].map((i) => Number(rest.slice(i, i + 2)));
  const ms = Date.UTC(year, (mo ?? 0) - 1, d, h, mi, s);
  // Date.UTC rolls over (month 13, second 60); a time that does not read back the same is invalid.
  const back = new Date(Number.isNaN(ms) ? 0 : ms);
  const fields = [back.getUTCFullYear(), back.getUTCMonth() + 1, back.getUTCDate(), back.getUTCHours(), back.getUTCMinutes(), back.getUTCSeconds()];
  if (match === null || fields.join() !== [year, mo, d, h, mi, s].join()) throw malformed(`bad time '${text}'`);
  return ms;
}

/** Extensions (RFC 5280 §4.1): OID → { critical, value }; an OID twice is refused. */
function readExtensions(list: DerNode): Map<string, { critical: boolean; value: DerNode }> {
  const out = new Map<string, { critical: boolean; value: DerNode }>();
  for (const ext of list.expect(TAG.SEQUENCE, 'the extensions').children()) {
    const parts = ext.expect(TAG.SEQUENCE, 'an extension').children();
    if (parts.length < 2 || parts.length > 3) throw malformed(`an extension has ${parts.length} fields`);
    const id = ext.child(0, TAG.OID, 'an extension OID').oid();
    const critical = parts.length === 3 && ext.child(1, BOOLEAN, 'the critical flag').content.equals(Buffer.of(0xff));
    const value = ext.child(parts.length - 1, TAG.OCTET_STRING, 'an extension value');
    if (out.has(id)) throw malformed(`extension ${id} appears twice`);
    out.set(id, { critical, value: value.inner() });
  }
  return out;
}

/** Refuses critical extensions outside `known` (RFC 5280 §5.2: such a CRL must not be used). */
function refuseUnknownCritical(extensions: Map<string, { critical: boolean }>, known: readonly string[]): void {
  for (const [id, ext] of extensions) {
    if (ext.critical && !known.includes(id)) throw new CrlError(`the CRL has a critical extension muster does not handle (${id})`);
  }
}

/** The crlExtensions: the CRLNumber, which RFC 5280 §5.2.3 makes mandatory. */
function readCrlExtensions(wrapper: DerNode | undefined): number {
  if (wrapper === undefined) throw malformed('no crlExtensions (and so no CRL number)');
  const extensions = readExtensions(wrapper.child(0, TAG.SEQUENCE, 'crlExtensions'));
  refuseUnknownCritical(extensions, [OID.authorityKeyIdentifier, CRL_NUMBER_OID]);
  const number = extensions.get(CRL_NUMBER_OID);
  if (number === undefined) throw malformed('no CRL number');
  const bytes = number.value.expect(TAG.INTEGER, 'the CRL number').content;
  if (bytes.length === 0 || (bytes[0]! & 0x80) !== 0) throw malformed('the CRL number is negative');
  const value = BigInt(`0x${bytes.toString('hex')}`);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed('the CRL number is too large');
  return Number(value);
}

/** revokedCertificates, each checked; a serial listed twice is refused. */
function readEntries(revoked: DerNode): CrlEntry[] {
  const entries = revoked.children().map(readEntry);
  const serials = new Set(entries.map((e) => e.serial));
  if (serials.size !== entries.length) throw malformed('a serial is listed twice');
  return entries;
}

/** One revoked certificate: positive serial, date, optional extensions of which only reasonCode is read. */
function readEntry(node: DerNode): CrlEntry {
  const parts = node.expect(TAG.SEQUENCE, 'a revoked certificate').children();
  const serial = node.child(0, TAG.INTEGER, 'a revoked serial').content;
  const date = parts[1];
  if (date === undefined || (date.tag !== UTC_TIME && date.tag !== GENERALIZED_TIME)) throw malformed('a revocation date is missing');
  if (parts.length > 3) throw malformed('unexpected fields in a revoked certificate');
  if (serial.length === 0 || (serial[0]! & 0x80) !== 0) throw malformed('a revoked serial is negative');
  const extensions = parts[2] === undefined ? new Map<string, { critical: boolean; value: DerNode }>() : readExtensions(parts[2]);
  refuseUnknownCritical(extensions, [REASON_CODE_OID]);
  return {
    serial: serialBytes(serial.toString('hex')).toString('hex').toUpperCase(),
    revokedAt: readTime(date),
    reason: readReason(extensions.get(REASON_CODE_OID)?.value),
  };
}

/** reasonCode ENUMERATED (RFC 5280 §5.3.1); absent means unspecified, and codes muster never writes are refused. */
function readReason(value: DerNode | undefined): RevocationReason {
  if (value === undefined) return 'unspecified';
  const content = value.expect(ENUMERATED, 'the reason code').content;
  const reason = content.length === 1 ? REASONS_BY_CODE.get(content[0]!) : undefined;
  if (reason === undefined) throw new CrlError(`the CRL has a reason code muster does not handle (${content.toString('hex')})`);
  return reason;
}
