/**
 * The names a service certificate may carry (issue 28), and the patterns
 * admins allow them with: an exact DNS name, `*.example.com` (any one label
 * in place of the star, as a certificate wildcard matches), or an IP
 * address. Names are compared in lower case; IPv6 addresses in their
 * canonical form, so `::1` and `0:0::1` are one name.
 */
import { isIP } from 'node:net';
import { MusterError } from './errors.js';

/** One DNS label: letters, digits and inner dashes, at most 63 characters. */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** The canonical text of an IP address (IPv6 through the URL parser), or undefined when `text` is none. */
function canonicalIp(text: string): string | undefined {
  const family = isIP(text);
  if (family === 4) return text;
  if (family === 6) return new URL(`http://[${text}]/`).hostname.slice(1, -1);
  return undefined;
}

/** Whether `text` is a DNS name of labels (at most 253 characters), a leading `*.` allowed when `wildcard`. */
function isDnsName(text: string, wildcard: boolean): boolean {
  if (text.length === 0 || text.length > 253) return false;
  const labels = text.split('.');
  if (wildcard && labels[0] === '*') labels.shift();
  return labels.length > 0 && labels.every((label) => LABEL.test(label));
}

/**
 * A name a service certificate asks for, in the form it is compared and
 * written in: lower case, an IPv6 address canonical. SAN_INVALID for anything
 * else (a URL, a name with a port, a star inside a label).
 */
export function normaliseSan(text: string): string {
  const trimmed = text.trim().toLowerCase();
  const ip = canonicalIp(trimmed.replace(/^\[(.*)\]$/, '$1'));
  if (ip !== undefined) return ip;
  if (isDnsName(trimmed, true)) return trimmed;
  throw new MusterError('SAN_INVALID', `${JSON.stringify(text.slice(0, 80))} is neither a DNS name nor an IP address`);
}

/** An admin's pattern, checked and normalised the same way (a name, `*.name`, or an IP). */
export function normalisePattern(text: string): string {
  return normaliseSan(text);
}

/** Whether `san` (normalised) is allowed by `pattern` (normalised): the same name, or one label in place of a leading star. */
export function sanMatches(pattern: string, san: string): boolean {
  if (pattern === san) return true;
  if (!pattern.startsWith('*.') || san.startsWith('*.')) return false;
  const suffix = pattern.slice(1); // ".example.com"
  if (!san.endsWith(suffix)) return false;
  const head = san.slice(0, -suffix.length);
  return head.length > 0 && !head.includes('.');
}

/** A service's name on its node: what `muster cert add NAME` names, and the file names of the pem layout. */
const SERVICE_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** True for a valid service certificate name. */
export function isServiceName(name: string): boolean {
  return SERVICE_NAME.test(name);
}
