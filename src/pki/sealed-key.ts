/**
 * A node key sealed under the cluster data key (autolock): the PKCS#8 PEM
 * encrypted with AES-256-GCM and bound to its file's name, written as a PEM
 * block whose label says what it is and is not a private key anyone can
 * load. A manager's node.key takes this shape while autolock is on.
 */
import { MusterError } from '../core/errors.js';
import { seal, unseal } from './seal.js';

const LABEL = 'MUSTER SEALED NODE KEY';
const BEGIN = `-----BEGIN ${LABEL}-----`;
const END = `-----END ${LABEL}-----`;
const CONTEXT = 'certificates/node.key';

/** Whether a key file's text is a sealed key. */
export function isSealedKey(text: string): boolean {
  return text.trimStart().startsWith(BEGIN);
}

/** Seals a PKCS#8 PEM key under the data key. */
export function sealNodeKey(dataKey: Buffer, keyPem: string): string {
  const sealed = seal(dataKey, keyPem, CONTEXT);
  const body = Buffer.concat([Buffer.from(sealed.iv, 'base64'), Buffer.from(sealed.data, 'base64')]).toString('base64');
  return `${BEGIN}\n${(body.match(/.{1,64}/g) ?? []).join('\n')}\n${END}\n`;
}

/** Opens a sealed key; STATE_CORRUPT when the data key is not the one it was sealed under. */
export function openNodeKey(dataKey: Buffer, text: string): string {
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new MusterError('STATE_CORRUPT', 'the sealed node key is malformed');
  const raw = Buffer.from(text.slice(start + BEGIN.length, end).replace(/\s+/g, ''), 'base64');
  if (raw.length < 12 + 16) throw new MusterError('STATE_CORRUPT', 'the sealed node key is malformed');
  return unseal(dataKey, { alg: 'A256GCM', iv: raw.subarray(0, 12).toString('base64'), data: raw.subarray(12).toString('base64') }, CONTEXT).toString('utf8');
}
