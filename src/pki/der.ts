/**
 * DER plumbing: PEM armour, a byte-exact TLV walker (signatures cover the
 * original bytes, so parsed structures are sliced, never re-encoded before a
 * verification), and builders over node-forge's ASN.1 module.
 */
import { createRequire } from 'node:module';
import type Forge from 'node-forge';

let loaded: typeof Forge | undefined;
/**
 * node-forge, loaded on first use: reading PEM and walking DER need none of
 * it, and loading it was a tenth of a client command's start-up (issue 29).
 * Synchronous (forge is CommonJS), so the builders stay synchronous.
 */
function forge(): typeof Forge {
  loaded ??= createRequire(import.meta.url)('node-forge') as typeof Forge;
  return loaded;
}

/** ASN.1 universal tags used here. */
export const TAG = {
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Object identifiers muster reads or writes. */
export const OID = {
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  organizationalUnitName: '2.5.4.11',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  crlDistributionPoints: '2.5.29.31',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sha384WithRsa: '1.2.840.113549.1.1.12',
  sha512WithRsa: '1.2.840.113549.1.1.13',
} as const;

/** One DER element located inside a buffer. */
export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the element. */
  end: number;
}

/**
 * Reads the DER element at `offset` (X.690 §8.1): single-byte tags, definite
 * lengths in minimal form only. Returns undefined on anything else, so
 * callers turn junk into their own typed error.
 */
export function readTlv(buf: Uint8Array, offset: number, limit: number = buf.length): Tlv | undefined {
  if (offset + 2 > limit) return undefined;
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) return undefined; // multi-byte tags never occur in X.509
  const first = buf[offset + 1]!;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = offset + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0 || count > 4 || offset + 2 + count > limit) return undefined; // indefinite or absurd
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[offset + 2 + i]!;
    if (length < 0x80 || (count > 1 && buf[offset + 2]! === 0)) return undefined; // not minimal: not DER
    contentStart = offset + 2 + count;
  }
  const end = contentStart + length;
  if (end > limit) return undefined;
  return { tag, start: offset, contentStart, end };
}

/** The direct children of a constructed element, or undefined if they do not tile it exactly. */
export function readChildren(buf: Uint8Array, parent: Tlv): Tlv[] | undefined {
  const out: Tlv[] = [];
  let at = parent.contentStart;
  while (at < parent.end) {
    const child = readTlv(buf, at, parent.end);
    if (child === undefined) return undefined;
    out.push(child);
    at = child.end;
  }
  return out;
}

/**
 * A DER element to navigate by position and tag: the one way muster reads
 * structures (CSRs, SPKIs, certificates). Every step that finds something
 * other than what it expects throws the caller's own error, so junk input
 * always becomes a typed refusal.
 */
export class DerNode {
  private constructor(
    readonly buf: Buffer,
    readonly tlv: Tlv,
    /** Makes the caller's error; `why` says what was wrong, for messages. */
    private readonly fail: (why: string) => Error,
  ) {}

  /** The single element that makes up all of `buf`. */
  static parse(buf: Buffer, fail: (why: string) => Error): DerNode {
    const tlv = readTlv(buf, 0);
    if (tlv === undefined) throw fail('it is not DER');
    if (tlv.end !== buf.length) throw fail('trailing bytes after the structure');
    return new DerNode(buf, tlv, fail);
  }

  get tag(): number {
    return this.tlv.tag;
  }

  /** The content bytes. */
  get content(): Buffer {
    return contentOf(this.buf, this.tlv);
  }

  /** The element's bytes, header included (what a signature covers). */
  get bytes(): Buffer {
    return sliceTlv(this.buf, this.tlv);
  }

  /** Throws unless the element has `tag`; returns it for chaining. */
  expect(tag: number, what = 'an element'): this {
    if (this.tlv.tag !== tag) throw this.fail(`${what} has the wrong type`);
    return this;
  }

  /** The direct children (they must tile the content exactly). */
  children(): DerNode[] {
    const children = readChildren(this.buf, this.tlv);
    if (children === undefined) throw this.fail('an element does not parse');
    return children.map((tlv) => new DerNode(this.buf, tlv, this.fail));
  }

  /** Child `index`, which must exist (and have `tag`, when given). */
  child(index: number, tag?: number, what = 'an element'): DerNode {
    const child = this.children()[index];
    if (child === undefined || (tag !== undefined && child.tag !== tag)) throw this.fail(`${what} is missing or has the wrong type`);
    return child;
  }

  /** The element inside this one's content (an OCTET STRING or BIT STRING wrapping DER). */
  inner(skip = 0): DerNode {
    return DerNode.parse(Buffer.from(this.content.subarray(skip)), this.fail);
  }

  /** The dotted OID of an OBJECT IDENTIFIER element. */
  oid(what = 'an OID'): string {
    return decodeOid(this.expect(TAG.OID, what).content);
  }
}

/** The bytes of an element, header included. */
export function sliceTlv(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.start, tlv.end);
}

/** The content bytes of an element. */
export function contentOf(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.contentStart, tlv.end);
}

/** Decodes an OID element's content (X.690 §8.19). */
export function decodeOid(content: Buffer): string {
  return forge().asn1.derToOid(forge().util.createBuffer(content.toString('binary')));
}

/** A PEM block's label and DER bytes. */
export interface PemBlock {
  label: string;
  der: Buffer;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)\r?\n?-----END \1-----/g;

/** Every PEM block in `text`, in order (RFC 7468). */
export function readPemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) {
    const label = match[1] ?? '';
    const body = (match[2] ?? '').replace(/\s+/g, '');
    blocks.push({ label, der: Buffer.from(body, 'base64') });
  }
  return blocks;
}

/** DER bytes as a PEM block with 64-column lines and a final newline. */
export function toPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

// Builders. Each returns finished DER bytes, so pre-encoded parts (an issuer
// Name, an SPKI, a signed TBS) are spliced in verbatim rather than parsed and
// re-encoded; forge.asn1 supplies the encodings of OIDs and times.

/** A DER element: tag, minimal definite length, contents (X.690 §8.1). */
export function tlv(tag: number, ...contents: Uint8Array[]): Buffer {
  let length = 0;
  for (const c of contents) length += c.length;
  let header: Buffer;
  if (length < 0x80) header = Buffer.of(tag, length);
  else if (length < 0x100) header = Buffer.of(tag, 0x81, length);
  else if (length < 0x10000) header = Buffer.of(tag, 0x82, length >> 8, length & 0xff);
  else header = Buffer.of(tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff);
  return Buffer.concat([header, ...contents]);
}

/** SEQUENCE of the given elements. */
export const seq = (...items: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...items);
/** SET of the given elements. */
export const set = (...items: Uint8Array[]): Buffer => tlv(TAG.SET, ...items);

const oidCache = new Map<string, Buffer>();
/** OBJECT IDENTIFIER (encodings are cached: the set of OIDs is small). */
export const oid = (id: string): Buffer => {
  let der = oidCache.get(id);
  if (der === undefined) {
    der = tlv(TAG.OID, Buffer.from(forge().asn1.oidToDer(id).getBytes(), 'binary'));
    oidCache.set(id, der);
  }
  return der;
};
/** INTEGER from big-endian unsigned bytes (a 0x00 is prepended when the top bit is set). */
export const uint = (bytes: Uint8Array): Buffer => {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const trimmed = bytes.subarray(i);
  return (trimmed[0] ?? 0) & 0x80 ? tlv(TAG.INTEGER, Buffer.of(0), trimmed) : tlv(TAG.INTEGER, trimmed);
};
/** INTEGER from a small non-negative number. */
export const smallInt = (n: number): Buffer => tlv(TAG.INTEGER, Buffer.from(forge().asn1.integerToDer(n).getBytes(), 'binary'));
/** BOOLEAN TRUE. */
export const TRUE: Buffer = Buffer.of(0x01, 0x01, 0xff);
/** NULL. */
export const NULL: Buffer = Buffer.of(TAG.NULL, 0x00);
/** OCTET STRING. */
export const octets = (bytes: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, bytes);
/** BIT STRING with a leading unused-bits count. */
export const bits = (bytes: Uint8Array, unused = 0): Buffer => tlv(TAG.BIT_STRING, Buffer.of(unused), bytes);
/** UTF8String. */
export const utf8 = (text: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(text, 'utf8'));
/** [n] EXPLICIT wrapper. */
export const explicit = (n: number, inner: Uint8Array): Buffer => tlv(0xa0 | n, inner);
/** [n] IMPLICIT primitive with raw content. */
export const implicitPrimitive = (n: number, content: Uint8Array): Buffer => tlv(0x80 | n, content);
/** [n] IMPLICIT constructed (e.g. an empty attribute set). */
export const implicitConstructed = (n: number, items: Uint8Array[]): Buffer => tlv(0xa0 | n, ...items);
/** UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280 §4.1.2.5). */
export const time = (ms: number): Buffer => {
  const date = new Date(Math.floor(ms / 1000) * 1000);
  return date.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(forge().asn1.dateToUtcTime(date), 'ascii'))
    : tlv(0x18, Buffer.from(forge().asn1.dateToGeneralizedTime(date), 'ascii'));
};
