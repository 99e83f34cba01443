/**
 * What `muster ca --rotate` prints while it waits, in Docker's words
 * (`rotated TLS certificates`, `rotated CA certificates`), one line each time
 * a count moves, so the output reads the same in a terminal and in a log.
 */
import type { RotationStatus } from '../api/schemas.js';

/** The lines a new status adds after `previous` (undefined: the first status). */
export function progressLines(status: RotationStatus, previous: RotationStatus | undefined, target: string): string[] {
  const lines: string[] = [];
  if (previous === undefined) lines.push(`desired root digest: sha256:${target}`);
  const { total, rotated } = status.nodes;
  if (status.rotating) {
    const moved = previous === undefined || previous.nodes.rotated !== rotated || previous.nodes.total !== total;
    if (moved) lines.push(`  rotated TLS certificates: ${rotated}/${total} nodes`);
    return lines;
  }
  if (previous === undefined || previous.rotating) {
    if (previous?.nodes.rotated !== total || previous.nodes.total !== total) lines.push(`  rotated TLS certificates: ${total}/${total} nodes`);
    lines.push(`  rotated CA certificates: ${total}/${total} nodes`);
  }
  return lines;
}

/**
 * What `muster ca --rotate` says about API users once it is done (or
 * detached): their folders hold the old root in ca.pem and a certificate
 * under it, which the managers accept, and serve their certificates for
 * (through the cross-signed copy), only until the old root's certificates
 * have expired.
 */
export function apiUserLines(status: RotationStatus): string[] {
  const reissue = '    muster ca create-api-certificate NAME --out NEW_DIR';
  if (status.rotating) {
    return [
      'API users: folders made before this rotation keep working for the certificate expiry plus the renewal grace after it completes.',
      'Once it has completed, give each user a new folder:',
      reissue,
    ];
  }
  if (status.oldRootUntil === undefined) return [];
  return [
    `API users: folders made before this rotation (their ca.pem holds only the old root) keep working until ${status.oldRootUntil}.`,
    'Give each user a new folder before then:',
    reissue,
  ];
}
