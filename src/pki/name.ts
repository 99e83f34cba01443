/**
 * Distinguished names: building the subject muster chooses, and reading the
 * fields it authorises on back out of a certificate.
 */
import { OID, oid, seq, set, utf8 } from './der.js';

/** The name fields muster writes; order on the wire is O, OU, CN. */
export interface NameFields {
  organization?: string;
  organizationalUnit?: string;
  commonName?: string;
}

/** Builds a Name (RFC 5280 §4.1.2.4) with one UTF8String attribute per RDN. */
export function buildName(fields: NameFields): Buffer {
  const rdns: Buffer[] = [];
  const add = (type: string, value: string | undefined): void => {
    if (value !== undefined) rdns.push(set(seq(oid(type), utf8(value))));
  };
  add(OID.organizationName, fields.organization);
  add(OID.organizationalUnitName, fields.organizationalUnit);
  add(OID.commonName, fields.commonName);
  return seq(...rdns);
}

/**
 * Reads O, OU and CN from Node's `X509Certificate.subject` text (one
 * `KEY=value` per line). A field that appears twice is treated as absent:
 * muster never issues such names, so an ambiguous one must not authorise.
 */
export function readNameFields(subject: string): NameFields {
  const seen = new Map<string, string | null>();
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    seen.set(key, seen.has(key) ? null : line.slice(eq + 1));
  }
  const get = (key: string): string | undefined => seen.get(key) ?? undefined;
  const out: NameFields = {};
  const o = get('O');
  const ou = get('OU');
  const cn = get('CN');
  if (o !== undefined) out.organization = o;
  if (ou !== undefined) out.organizationalUnit = ou;
  if (cn !== undefined) out.commonName = cn;
  return out;
}
