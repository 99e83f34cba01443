/**
 * An API user's folder replaced as a pair (issue 28): a renewal cut short
 * between its two renames is finished the next time the folder is read, the
 * certificate chaining to the root through the admin CA it is sent with; a
 * certificate is due for renewal in the last third of its lifetime only.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore } from '../../src/agent/key-store.js';
import { apiUserFiles, dueForRenewal, readApiUserFolder } from '../../src/cli/api-user-folder.js';
import { scratchDir } from '../helpers/openssl.js';
import { HOUR, foundTestCluster, freshCsr, type TestCluster } from '../helpers/service.js';

const scratch = scratchDir('muster-user-folder-');
let t: TestCluster;
beforeAll(async () => {
  t = await foundTestCluster();
});
afterAll(async () => {
  await t.cleanup();
  scratch.cleanup();
});

async function issued(name: string, expiry = '24h') {
  const { csr, keyPem } = freshCsr();
  const user = await t.caServer.issueUser({ name, csr, expiry });
  return { certPem: user.certificate, keyPem, rootPem: user.rootCA };
}

describe("an API user's folder", () => {
  it('a renewal cut short after the key was renamed is finished when the folder is read: the new key with the new certificate', async () => {
    const dir = scratch.path('alice');
    mkdirSync(dir, { mode: 0o700 });
    const files = apiUserFiles(dir);
    const layout = { dataDir: dir, certificatesDir: dir, nodeKey: files.key, nodeCert: files.cert, rootCa: files.ca };
    await new KeyStore(layout).writePair(await issued('alice'));
    const next = await issued('alice');
    const crash = new KeyStore(layout, {
      afterStep: (step) => {
        if (step === 'key-renamed') throw new Error('crash');
      },
    });
    await expect(crash.writePair(next)).rejects.toThrow('crash');
    // The new key sits next to the old certificate: read as it is, they would not match.
    expect(new X509Certificate(readFileSync(files.cert)).checkPrivateKey(createPrivateKey(readFileSync(files.key)))).toBe(false);
    const read = await readApiUserFolder(dir);
    expect(read.certPem).toBe(next.certPem);
    expect(read.keyPem).toBe(next.keyPem);
    expect(new X509Certificate(read.certPem).checkPrivateKey(createPrivateKey(read.keyPem))).toBe(true);
  });

  it('is due for renewal in the last third of its lifetime, not before and not once expired; a node certificate never', async () => {
    const { certPem } = await issued('bob', '2h'); // backdated an hour: three hours of lifetime
    const cert = new X509Certificate(certPem);
    const notAfter = Date.parse(cert.validTo);
    expect(dueForRenewal(certPem, notAfter - 61 * 60_000)).toBe(false);
    expect(dueForRenewal(certPem, notAfter - 59 * 60_000)).toBe(true);
    expect(dueForRenewal(certPem, notAfter + 1_000)).toBe(false);
    expect(dueForRenewal(t.managerTls.certPem, Date.parse(t.managerCert.validTo) - HOUR)).toBe(false);
  });
});
