/** What `muster ca --rotate` prints as a rotation moves (issue 18), snapshot-tested on a scripted run. */
import { describe, expect, it } from 'vitest';
import type { RotationStatus } from '../../src/api/schemas.js';
import { apiUserLines, progressLines } from '../../src/cli/rotation-progress.js';

const TARGET = 'ab'.repeat(32);
const OLD = 'cd'.repeat(32);
const rotating = (rotated: number, total: number): RotationStatus => ({
  rotating: true,
  rootDigest: OLD,
  targetDigest: TARGET,
  startedAt: '2026-11-24T08:00:00.000Z',
  nodes: { total, rotated },
});
const done = (total: number): RotationStatus => ({ rotating: false, rootDigest: TARGET, nodes: { total, rotated: total } });

/** Everything printed for a sequence of statuses, as the command prints it. */
function run(statuses: RotationStatus[]): string {
  let previous: RotationStatus | undefined;
  let out = '';
  for (const status of statuses) {
    out += progressLines(status, previous, TARGET)
      .map((l) => `${l}\n`)
      .join('');
    previous = status;
  }
  return out;
}

describe('rotation progress', () => {
  it('prints the target, each move of the count once, then both lines complete', () => {
    expect(run([rotating(0, 6), rotating(0, 6), rotating(2, 6), rotating(5, 6), rotating(5, 5), done(5)])).toMatchInlineSnapshot(`
      "desired root digest: sha256:abababababababababababababababababababababababababababababababab
        rotated TLS certificates: 0/6 nodes
        rotated TLS certificates: 2/6 nodes
        rotated TLS certificates: 5/6 nodes
        rotated TLS certificates: 5/5 nodes
        rotated CA certificates: 5/5 nodes
      "
    `);
  });

  it('a rotation that completed before the first look says so at once', () => {
    expect(run([done(3)])).toMatchInlineSnapshot(`
      "desired root digest: sha256:abababababababababababababababababababababababababababababababab
        rotated TLS certificates: 3/3 nodes
        rotated CA certificates: 3/3 nodes
      "
    `);
  });

  it('says how and until when API users made before the rotation work, once it completed; and before, when detached', () => {
    expect(apiUserLines({ ...done(3), oldRootUntil: '2027-01-01T10:00:00.000Z' }).join('\n')).toMatchInlineSnapshot(`
      "API users: folders made before this rotation (their ca.pem holds only the old root) keep working until 2027-01-01T10:00:00.000Z.
      Give each user a new folder before then:
          muster ca create-api-certificate NAME --out NEW_DIR"
    `);
    expect(apiUserLines(rotating(0, 3)).join('\n')).toMatchInlineSnapshot(`
      "API users: folders made before this rotation keep working for the certificate expiry plus the renewal grace after it completes.
      Once it has completed, give each user a new folder:
          muster ca create-api-certificate NAME --out NEW_DIR"
    `);
    expect(apiUserLines(done(3))).toEqual([]); // no root was replaced (or its certificates have expired)
  });
});
