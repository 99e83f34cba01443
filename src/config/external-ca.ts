/**
 * `--external-ca protocol=cfssl,url=URL[,cacert=FILE][,authkey=HEX]`, the
 * flag docker swarm init takes for an external CA (seeds 003, 004).
 */
import { MusterError } from '../core/errors.js';

/** One external CA as the flag names it (cacert is still a file name here). */
export interface ExternalCaFlag {
  protocol: 'cfssl';
  url: string;
  cacertFile?: string;
  /** HMAC key for cfssl's authsign endpoint, as hex. A secret. */
  authKeyHex?: string;
}

/**
 * Parses one --external-ca value; USAGE with a hint on anything malformed.
 * An http:// URL needs `insecure` (--external-ca-insecure): the CSRs, the
 * certificates and the authsign MAC would cross the network in clear, and
 * anyone on the path could answer as the CA.
 */
export function parseExternalCaFlag(text: string, options: { insecure?: boolean } = {}): ExternalCaFlag {
  const hint = 'write --external-ca protocol=cfssl,url=https://HOST:PORT[,cacert=FILE][,authkey=HEX]';
  const fields = new Map<string, string>();
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new MusterError('USAGE', `invalid --external-ca field '${part.slice(0, 40)}'`, { hint });
    const key = part.slice(0, eq).trim().toLowerCase();
    if (fields.has(key)) throw new MusterError('USAGE', `--external-ca names ${key} twice`, { hint });
    fields.set(key, part.slice(eq + 1).trim());
  }
  for (const key of fields.keys()) {
    if (!['protocol', 'url', 'cacert', 'authkey'].includes(key)) throw new MusterError('USAGE', `unknown --external-ca field '${key}'`, { hint });
  }
  if (fields.get('protocol') !== 'cfssl') throw new MusterError('USAGE', '--external-ca needs protocol=cfssl (the only protocol muster speaks)', { hint });
  const url = fields.get('url') ?? '';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new MusterError('USAGE', `--external-ca url '${url.slice(0, 80)}' is not a URL`, { hint });
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new MusterError('USAGE', '--external-ca url must be http(s)', { hint });
  if (parsed.protocol === 'http:' && options.insecure !== true) {
    throw new MusterError(
      'USAGE',
      `--external-ca url ${parsed.origin} is plain http: certificate requests and certificates would travel in clear, and anyone on the path could answer as the CA`,
      {
        hint: 'use https:// (cacert=FILE verifies the CA), or add --external-ca-insecure if the CA is reachable only over a network you trust',
      },
    );
  }
  const flag: ExternalCaFlag = { protocol: 'cfssl', url: url.replace(/\/+$/, '') };
  const cacert = fields.get('cacert');
  if (cacert !== undefined && cacert !== '') flag.cacertFile = cacert;
  const authkey = fields.get('authkey');
  if (authkey !== undefined) {
    // Never echo the key: it is a secret.
    if (!/^(?:[0-9a-fA-F]{2}){16,}$/.test(authkey)) throw new MusterError('USAGE', '--external-ca authkey must be hex, at least 16 bytes', { hint });
    flag.authKeyHex = authkey.toLowerCase();
  }
  return flag;
}
