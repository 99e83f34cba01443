/**
 * PKCS#10 certificate signing requests (RFC 2986): making them on the node,
 * and reading them on the manager. The manager keeps only the public key,
 * after checking the self-signature and the key policy: the subject, SANs
 * and extensions a CSR asks for are ignored (the manager decides identity).
 */
import { sign, verify, type KeyObject } from 'node:crypto';
import { MusterError } from '../core/errors.js';
import { checkKeyPolicy, spkiDer, type KeyKind } from './keys.js';
import { buildName, type NameFields } from './name.js';
import { DerNode, OID, TAG, bits, implicitConstructed, readPemBlocks, seq, smallInt, toPem } from './der.js';
import { signatureAlgorithm } from './signature.js';
import { readPolicyKey } from './spki.js';

/** The largest CSR the parser reads, PEM armour included. */
export const MAX_CSR_BYTES = 16 * 1024;

/** What the manager takes from a CSR. */
export interface ParsedCsr {
  publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER, exactly as the CSR carried it. */
  spki: Buffer;
  keyKind: KeyKind;
}

/** Makes a PEM CSR signed by `privateKey`; the subject is a courtesy, the manager ignores it. */
export function createCsr(params: { privateKey: KeyObject; subject?: NameFields }): string {
  const kind = checkKeyPolicy(params.privateKey, { weak: 'CSR_WEAK_KEY', unsupported: 'CSR_UNSUPPORTED_KEY' });
  const infoDer = seq(
    smallInt(0),
    buildName(params.subject ?? {}),
    spkiDer(params.privateKey),
    implicitConstructed(0, []), // no attributes
  );
  const algorithm = signatureAlgorithm(kind);
  const signature = sign(algorithm.hash, infoDer, params.privateKey);
  return toPem(seq(infoDer, algorithm.identifier, bits(signature)), 'CERTIFICATE REQUEST');
}

const SIGNATURE_OIDS: Readonly<Record<string, { hash: string; family: 'ec' | 'rsa' }>> = {
  [OID.ecdsaWithSha256]: { hash: 'sha256', family: 'ec' },
  [OID.ecdsaWithSha384]: { hash: 'sha384', family: 'ec' },
  [OID.ecdsaWithSha512]: { hash: 'sha512', family: 'ec' },
  [OID.sha256WithRsa]: { hash: 'sha256', family: 'rsa' },
  [OID.sha384WithRsa]: { hash: 'sha384', family: 'rsa' },
  [OID.sha512WithRsa]: { hash: 'sha512', family: 'rsa' },
};

const malformed = (why: string): MusterError => new MusterError('CSR_MALFORMED', `the CSR is not a valid PKCS#10 request: ${why}`);

/**
 * Reads a PEM CSR and returns its public key once the self-signature verifies.
 *
 * Wire format (RFC 2986 §4):
 *   CertificationRequest ::= SEQUENCE {
 *     certificationRequestInfo SEQUENCE { version INTEGER(0), subject Name,
 *                                         subjectPKInfo SubjectPublicKeyInfo,
 *                                         attributes [0] IMPLICIT SET },
 *     signatureAlgorithm AlgorithmIdentifier,
 *     signature BIT STRING }
 * The signature covers the DER bytes of certificationRequestInfo as sent.
 */
export function parseCsr(pem: unknown): ParsedCsr {
  if (typeof pem !== 'string') throw new MusterError('CSR_NOT_PEM', 'the CSR must be a PEM string');
  if (Buffer.byteLength(pem) > MAX_CSR_BYTES) throw new MusterError('CSR_TOO_LARGE');
  const blocks = readPemBlocks(pem);
  const first = blocks[0];
  if (first === undefined) throw new MusterError('CSR_NOT_PEM');
  if (blocks.length > 1) throw malformed('expected one PEM block');
  if (first.label !== 'CERTIFICATE REQUEST' && first.label !== 'NEW CERTIFICATE REQUEST') {
    throw malformed(`expected a CERTIFICATE REQUEST block, got ${first.label}`);
  }
  const request = DerNode.parse(first.der, malformed).expect(TAG.SEQUENCE, 'the request');
  const parts = request.children();
  if (parts.length > 3) throw malformed('unexpected fields');
  const info = request.child(0, TAG.SEQUENCE, 'certificationRequestInfo');
  const algorithm = request.child(1, TAG.SEQUENCE, 'signatureAlgorithm');
  const signature = request.child(2, TAG.BIT_STRING, 'signature');
  const versionBytes = info.child(0, TAG.INTEGER, 'version').content;
  if (versionBytes.length !== 1 || versionBytes[0] !== 0) throw malformed('unsupported version');
  info.child(1, TAG.SEQUENCE, 'subject');
  const spkiElement = info.child(2, TAG.SEQUENCE, 'subjectPKInfo');

  const algId = algorithm.child(0, TAG.OID, 'the signature algorithm OID').oid();
  const alg = SIGNATURE_OIDS[algId];
  if (alg === undefined) throw new MusterError('CSR_UNSUPPORTED_ALGORITHM', `the CSR signature algorithm ${algId} is not supported`);

  const spki = Buffer.from(spkiElement.bytes);
  const { publicKey, kind: keyKind } = readPolicyKey(spki, {
    weak: 'CSR_WEAK_KEY',
    unsupported: 'CSR_UNSUPPORTED_KEY',
    malformed: () => malformed('the public key cannot be read'),
  });
  if ((keyKind === 'rsa') !== (alg.family === 'rsa')) {
    throw new MusterError('CSR_UNSUPPORTED_ALGORITHM', 'the CSR signature algorithm does not match its key');
  }

  const sigContent = signature.content;
  if (sigContent.length < 2 || sigContent[0] !== 0) throw new MusterError('CSR_BAD_SIGNATURE');
  let ok = false;
  try {
    ok = verify(alg.hash, info.bytes, publicKey, sigContent.subarray(1));
  } catch {
    ok = false;
  }
  if (!ok) throw new MusterError('CSR_BAD_SIGNATURE');
  return { publicKey, spki, keyKind };
}
