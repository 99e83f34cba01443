import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { KeyStore, WRITE_STEPS } from '../../src/agent/key-store.js';
import { writeFileAtomic } from '../../src/core/atomic-file.js';
import { FakeClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { dataDirLayout } from '../../src/config/paths.js';
import { createRootCa, loadSigningCa } from '../../src/pki/ca.js';
import { createCsr, parseCsr } from '../../src/pki/csr.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { generateDataKey } from '../../src/pki/seal.js';
import { MusterError } from '../../src/core/errors.js';
import { scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir('muster-keys-');
afterAll(() => scratch.cleanup());
let folders = 0;
/** A folder of its own for each test. */
const fresh = (name: string): string => scratch.path(`${name}-${folders++}`);

const clock = new FakeClock(Date.now());
const ca = loadSigningCa(createRootCa({ clusterId: 'c', clock, random: systemRandom }));

/** A real key and the certificate the CA issued for it. */
function makePair(tag: string) {
  const key = generateNodeKeySync();
  const issued = issueCertificate({
    ca,
    csr: parseCsr(createCsr({ privateKey: key.privateKey })),
    role: 'worker',
    commonName: tag,
    clusterId: 'c',
    validityMs: 3_600_000,
    clock,
    random: systemRandom,
  });
  return { keyPem: key.privateKeyPem, certPem: issued.certPem, rootPem: ca.certPem };
}

const matches = (pair: { keyPem: string; certPem: string }): boolean => new X509Certificate(pair.certPem).checkPrivateKey(createPrivateKey(pair.keyPem));
const cnOf = (certPem: string): string | undefined => /CN=(\S+)/.exec(new X509Certificate(certPem).subject)?.[1];

describe('KeyStore', () => {
  it('writes the key 0600 and the folders 0700, whatever the umask', async () => {
    const old = process.umask(0o000);
    try {
      const layout = dataDirLayout(fresh('node'));
      const store = new KeyStore(layout);
      await store.ensureDirs();
      await store.writePair(makePair('a'));
      expect(statSync(layout.dataDir).mode & 0o777).toBe(0o700);
      expect(statSync(layout.certificatesDir).mode & 0o777).toBe(0o700);
      expect(statSync(layout.nodeKey).mode & 0o777).toBe(0o600);
      expect(statSync(layout.nodeCert).mode & 0o777).toBe(0o644);
      expect(readdirSync(layout.certificatesDir).sort()).toEqual(['node.crt', 'node.key', 'root-ca.crt']);
    } finally {
      process.umask(old);
    }
  });

  it('round-trips a pair and reports an empty data dir as undefined', async () => {
    const layout = dataDirLayout(fresh('node'));
    const store = new KeyStore(layout);
    await store.ensureDirs();
    expect(await store.load()).toBeUndefined();
    const pair = makePair('a');
    await store.writePair(pair);
    expect(await store.load()).toEqual(pair);
  });

  it.each(WRITE_STEPS.map((s) => [s]))('a crash after %s leaves a matching pair, old or new', async (crashAt) => {
    const layout = dataDirLayout(scratch.path(`node-${crashAt}`));
    await new KeyStore(layout).ensureDirs();
    await new KeyStore(layout).writePair(makePair('old'));
    const crashing = new KeyStore(layout, {
      afterStep: (step) => {
        if (step === crashAt) throw new Error(`crash after ${step}`);
      },
    });
    await expect(crashing.writePair(makePair('new'))).rejects.toThrow(/crash/);
    const loaded = await new KeyStore(layout).load({ recover: true }); // a restart of the node's own process
    expect(loaded).toBeDefined();
    expect(matches(loaded!)).toBe(true);
    const cn = cnOf(loaded!.certPem);
    expect(['old', 'new']).toContain(cn);
    // Once both halves were durable the new pair wins; before that the old pair stays.
    expect(cn).toBe(crashAt === 'key-written' ? 'old' : 'new');
    expect(existsSync(`${layout.nodeKey}.next`) || existsSync(`${layout.nodeCert}.next`)).toBe(false);
  });

  it('a crash between writing the key and the certificate keeps the previous pair', async () => {
    const layout = dataDirLayout(fresh('node'));
    await new KeyStore(layout).ensureDirs();
    const previous = makePair('previous');
    await new KeyStore(layout).writePair(previous);
    const crashing = new KeyStore(layout, {
      afterStep: (step) => {
        if (step === 'key-written') throw new Error('power cut');
      },
    });
    await expect(crashing.writePair(makePair('next'))).rejects.toThrow('power cut');
    expect(await new KeyStore(layout).load({ recover: true })).toEqual(previous);
  });

  it.each([
    ['a short key and an empty certificate (a full disk)', (pending: ReturnType<typeof makePair>) => ({ key: pending.keyPem.slice(0, 241), cert: '' })],
    ['a certificate for another key', (pending: ReturnType<typeof makePair>) => ({ key: pending.keyPem, cert: makePair('other').certPem })],
    [
      'a certificate from another root',
      (_pending: ReturnType<typeof makePair>) => {
        const foreign = loadSigningCa(createRootCa({ clusterId: 'x', clock, random: systemRandom }));
        const key = generateNodeKeySync();
        const cert = issueCertificate({
          ca: foreign,
          csr: parseCsr(createCsr({ privateKey: key.privateKey })),
          role: 'worker',
          commonName: 'foreign',
          clusterId: 'x',
          validityMs: 3_600_000,
          clock,
          random: systemRandom,
        });
        return { key: key.privateKeyPem, cert: cert.certPem };
      },
    ],
  ])('recovery never moves an unsound pending pair into place: %s', async (_name, make) => {
    const layout = dataDirLayout(fresh('node'));
    await new KeyStore(layout).ensureDirs();
    const current = makePair('current');
    await new KeyStore(layout).writePair(current);
    const { key, cert } = make(makePair('pending'));
    writeFileSync(`${layout.nodeKey}.next`, key, { mode: 0o600 });
    writeFileSync(`${layout.nodeCert}.next`, cert, { mode: 0o644 });
    expect(await new KeyStore(layout).load({ recover: true })).toEqual(current);
    expect(existsSync(`${layout.nodeKey}.next`) || existsSync(`${layout.nodeCert}.next`)).toBe(false);
  });

  it('a reader in another process never sees a new key with the old certificate while the owner switches pairs', async () => {
    const layout = dataDirLayout(fresh('node'));
    await new KeyStore(layout).ensureDirs();
    await new KeyStore(layout).writePair(makePair('0'));
    const pairs = Array.from({ length: 40 }, (_, i) => makePair(String(i + 1)));
    let writing = true;
    const writer = (async () => {
      for (const pair of pairs) await new KeyStore(layout).writePair({ keyPem: pair.keyPem, certPem: pair.certPem });
      writing = false;
    })();
    let reads = 0;
    while (writing) {
      const loaded = await new KeyStore(layout).load(); // a reader: never recovers
      expect(matches(loaded!)).toBe(true);
      reads += 1;
    }
    await writer;
    expect(reads).toBeGreaterThan(5);
  });

  it('refuses a key file that others can read, with the fix as a hint', async () => {
    const layout = dataDirLayout(fresh('node'));
    const store = new KeyStore(layout);
    await store.ensureDirs();
    await store.writePair(makePair('a'));
    chmodSync(layout.nodeKey, 0o644);
    await expect(store.load()).rejects.toMatchObject({ code: 'KEY_FILE_INSECURE', hint: `run: chmod 0600 ${layout.nodeKey}` });
  });

  it('refuses a data dir that others can enter', async () => {
    const layout = dataDirLayout(fresh('node'));
    const store = new KeyStore(layout);
    await store.ensureDirs();
    await store.writePair(makePair('a'));
    chmodSync(layout.dataDir, 0o755);
    await expect(store.load()).rejects.toMatchObject({ code: 'DATA_DIR_INSECURE', hint: `run: chmod 0700 ${layout.dataDir}` });
  });

  it('reads a sealed node.key under the data key, and refuses one with a bit flipped, under the previous data key too', async () => {
    const dataKey = generateDataKey();
    const previous = generateDataKey();
    const layout = dataDirLayout(fresh('sealed'));
    const store = new KeyStore(layout, { cipher: { dataKey: () => dataKey, sealing: () => true, previousDataKey: () => previous } });
    await store.ensureDirs();
    const pair = makePair('s');
    await store.writePair(pair);
    const sealed = readFileSync(layout.nodeKey, 'utf8');
    expect(sealed).toMatch(/^-----BEGIN MUSTER SEALED NODE KEY-----\n/);
    expect(await store.load()).toEqual(pair);
    const lines = sealed.trim().split('\n');
    const body = Buffer.from(lines.slice(1, -1).join(''), 'base64');
    body[body.length - 20] = body[body.length - 20]! ^ 0x04; // in the ciphertext, before the tag
    writeFileSync(layout.nodeKey, `${lines[0]}\n${body.toString('base64')}\n${lines.at(-1)}\n`, { mode: 0o600 });
    const failed = await store.load().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failed).toBeInstanceOf(MusterError);
    // Refused as tampered (the tag), not read as some other key that then fails to match its certificate.
    expect(failed).toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/cannot be decrypted/) });
  });

  it('refuses a key that does not match its certificate', async () => {
    const layout = dataDirLayout(fresh('node'));
    const store = new KeyStore(layout);
    await store.ensureDirs();
    await store.writePair(makePair('a'));
    await writeFileAtomic(layout.nodeKey, generateNodeKeySync().privateKeyPem, 0o600);
    await expect(store.load()).rejects.toMatchObject({ code: 'STATE_CORRUPT' });
  });

  it('writeFileAtomic leaves no temp files and sets the mode', async () => {
    const dir = fresh('atomic');
    mkdirSync(dir);
    const file = `${dir}/x.json`;
    await writeFileAtomic(file, '{"a":1}', 0o600);
    await writeFileAtomic(file, '{"a":2}', 0o600);
    expect(readdirSync(dir)).toEqual(['x.json']);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});
