/** muster-ca's certificate profiles as pure functions: time and randomness injected. */
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  buildLeafCertificate,
  buildRootCertificate,
  checkClusterName,
  checkHostname,
  checkUsername,
  parseFlockerRoot,
  uuidV4,
  FLOCKER_VALIDITY_MS,
  type CredentialKey,
} from '../../src/ca-tool/profiles.js';
import { seededRandom } from '../../src/core/random.js';
import { extensionsOf } from '../helpers/muster-ca.js';
import { OID } from '../../src/pki/der.js';
import { codeOfSync } from '../helpers/codes.js';

const p256 = (): CredentialKey => ({ ...generateKeyPairSync('ec', { namedCurve: 'P-256' }), kind: 'ec-p256' });
const T0 = Date.UTC(2026, 0, 1);

describe('muster-ca profiles', () => {
  it('uuidV4: 8-4-4-4-12 hex with the version-4 and RFC variant bits, from the Random given', () => {
    const random = seededRandom('uuid');
    const ids = Array.from({ length: 200 }, () => uuidV4(random));
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect(uuidV4(seededRandom('same'))).toBe(uuidV4(seededRandom('same')));
  });

  it('a leaf never outlives its root: made 19 years after it, it ends when the root ends', () => {
    const random = seededRandom('cap');
    const rootKey = p256();
    const certPem = buildRootCertificate({ name: 'c', clusterUuid: uuidV4(random), key: rootKey, now: T0, random });
    const root = parseFlockerRoot(certPem, rootKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    expect(root.ca.notAfter - root.ca.notBefore).toBe(FLOCKER_VALIDITY_MS);
    const early = new X509Certificate(
      buildLeafCertificate({ root, profile: { kind: 'node', uuid: uuidV4(random) }, publicKey: p256().publicKey, now: T0 + 1000, random }),
    );
    expect(Date.parse(early.validTo)).toBe(root.ca.notAfter);
    const late = T0 + 19 * 365 * 86_400_000;
    const leaf = new X509Certificate(
      buildLeafCertificate({ root, profile: { kind: 'node', uuid: uuidV4(random) }, publicKey: p256().publicKey, now: late, random }),
    );
    expect([Date.parse(leaf.validFrom), Date.parse(leaf.validTo)]).toEqual([late, root.ca.notAfter]);
  });

  it('an IPv6 control host gets an iPAddress SAN of 16 bytes', () => {
    const random = seededRandom('v6');
    const rootKey = p256();
    const root = parseFlockerRoot(
      buildRootCertificate({ name: 'c', clusterUuid: uuidV4(random), key: rootKey, now: T0, random }),
      rootKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    );
    const pem = buildLeafCertificate({ root, profile: { kind: 'control', hostname: checkHostname('fd00::1') }, publicKey: p256().publicKey, now: T0, random });
    expect(new X509Certificate(pem).subjectAltName).toBe('IP Address:FD00:0:0:0:0:0:0:1');
    const name = extensionsOf(pem).get(OID.subjectAltName)!.value.child(0);
    expect([name.tag, name.content.toString('hex')]).toEqual([0x87, 'fd000000000000000000000000000001']);
  });

  it('names: what fits in a file name and a 64-character CN passes, the rest is USAGE', () => {
    expect(checkUsername('alice')).toBe('alice');
    expect(checkUsername('a'.repeat(59))).toBe('a'.repeat(59));
    expect(checkUsername('élodie')).toBe('élodie');
    for (const bad of ['', '.', '..', '../x', '/etc/x', 'a/b', 'a\\b', 'a\nb', 'a'.repeat(60)])
      expect(
        codeOfSync(() => checkUsername(bad)),
        JSON.stringify(bad),
      ).toBe('USAGE');
    expect(checkHostname('control.example.org')).toBe('control.example.org');
    expect(checkHostname('10.0.0.1')).toBe('10.0.0.1');
    for (const bad of ['', '../x', '/etc/x', 'a..b', '-a.org', 'a_b.org', '*.example.org', 'example.org.', `${'a'.repeat(64)}.org`])
      expect(
        codeOfSync(() => checkHostname(bad)),
        bad,
      ).toBe('USAGE');
    expect(checkClusterName('mycluster')).toBe('mycluster');
    for (const bad of ['', 'a'.repeat(65), 'a\tb'])
      expect(
        codeOfSync(() => checkClusterName(bad)),
        bad,
      ).toBe('USAGE');
  });
});
