/**
 * The one writer for a node's key material (SwarmKit's KeyReadWriter).
 * Key and certificate are replaced as a pair: both are written to `.next`
 * files and fsync'd, the certificate last (its presence marks a complete
 * pending pair), then renamed into place. `recover()` finishes or rolls
 * back an interrupted replacement, so a crash at any point leaves either the
 * old matching pair or the new one. Keys are 0600, folders 0700. Under
 * autolock a manager's key is written sealed under the cluster data key
 * (pki/sealed-key.ts) and read back through the same cipher.
 */
import { createPrivateKey } from 'node:crypto';
import { constants } from 'node:fs';
import { readFile, rename, rm } from 'node:fs/promises';
import { ensurePrivateDir, pathExists, syncDir, writeFileAtomic, writeNewFileSynced } from '../core/atomic-file.js';
import { MusterError } from '../core/errors.js';
import type { DataDirLayout } from '../config/paths.js';
import { checkPrivate } from '../core/private-file.js';
import { isIssuedBy, readBundle } from '../pki/peer.js';
import { isSealedKey, openNodeKey, sealNodeKey } from '../pki/sealed-key.js';

/** How many times a reader looks again while the owner switches the pair (5 ms apart). */
const SWITCH_READS = 100;

/** Reads a file of the data dir, never through a symbolic link. */
function readPrivate(path: string): Promise<string> {
  return readFile(path, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW });
}

/** True when the key matches the certificate and, given a root, the certificate chains to it (directly, or through a CA sent with it, as an API user's admin CA). */
function pairHolds(keyPem: string, certPem: string, rootPem?: string): boolean {
  try {
    const [cert, ...sent] = readBundle(certPem);
    if (cert === undefined || !cert.checkPrivateKey(createPrivateKey(keyPem))) return false;
    if (rootPem === undefined) return true;
    const roots = readBundle(rootPem);
    return roots.some((root) => isIssuedBy(cert, root)) || sent.some((ca) => isIssuedBy(cert, ca) && roots.some((root) => isIssuedBy(ca, root)));
  } catch {
    return false;
  }
}

/** A key, its certificate and the root they chain to. */
export interface KeyPair {
  keyPem: string;
  certPem: string;
  rootPem: string;
}

/** Autolock's hold on node.key: the data key sealed keys open with, and whether new keys are written sealed. */
export interface KeyCipher {
  /** Undefined while the manager is locked: a sealed key then cannot be read. */
  dataKey(): Buffer | undefined;
  /** Autolock is on here: keys are written sealed. */
  sealing(): boolean;
  /** While the manager moves to a new data key (a re-key): the one before it, which node.key may still be sealed under. */
  previousDataKey?(): Buffer | undefined;
}

/** Options of a KeyStore: the autolock cipher, and fault injection for tests (throw from `afterStep` to simulate a crash there). */
export interface KeyStoreHooks {
  afterStep?: (step: string) => void;
  cipher?: KeyCipher;
}

/** Writers of one node.key in this process, one after another (a renewal and an autolock change must not interleave). */
const writers = new Map<string, Promise<unknown>>();

function serialized<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const run = (writers.get(path) ?? Promise.resolve()).catch(() => undefined).then(fn);
  const tail = run.catch(() => undefined);
  writers.set(path, tail);
  void tail.then(() => {
    if (writers.get(path) === tail) writers.delete(path);
  });
  return run;
}

/** Step names of {@link KeyStore.writePair}, in order. */
export const WRITE_STEPS = ['key-written', 'cert-written', 'dir-synced', 'key-renamed', 'cert-renamed'] as const;

/** Reads and writes the node's key material in its data dir. */
export class KeyStore {
  private readonly keyNext: string;
  private readonly certNext: string;

  constructor(
    private readonly layout: Pick<DataDirLayout, 'dataDir' | 'certificatesDir' | 'nodeKey' | 'nodeCert' | 'rootCa'>,
    private readonly hooks: KeyStoreHooks = {},
  ) {
    this.keyNext = `${layout.nodeKey}.next`;
    this.certNext = `${layout.nodeCert}.next`;
  }

  /** Creates the data dir and certificates dir, 0700. */
  async ensureDirs(): Promise<void> {
    for (const dir of [this.layout.dataDir, this.layout.certificatesDir]) await ensurePrivateDir(dir);
  }

  /** The key as it goes on disk: sealed under the data key while autolock is on. */
  private encode(keyPem: string): string {
    const cipher = this.hooks.cipher;
    if (cipher === undefined || !cipher.sealing()) return keyPem;
    const dataKey = cipher.dataKey();
    if (dataKey === undefined) throw new MusterError('MANAGER_LOCKED');
    return sealNodeKey(dataKey, keyPem);
  }

  /** The key as PEM, from what is on disk. */
  private decode(text: string): string {
    if (!isSealedKey(text)) return text;
    const dataKey = this.hooks.cipher?.dataKey();
    if (dataKey === undefined) {
      throw new MusterError('MANAGER_LOCKED', `${this.layout.nodeKey} is sealed under the cluster data key (autolock is on)`, {
        hint: "on this host, talk to the running manager: it must be unlocked first ('muster unlock'); elsewhere use an API-user certificate (--host with --tls-cert/--tls-key/--tls-ca)",
      });
    }
    const previous = this.hooks.cipher?.previousDataKey?.();
    try {
      return openNodeKey(dataKey, text);
    } catch (error) {
      if (previous === undefined) throw error;
      return openNodeKey(previous, text);
    }
  }

  /** Whether node.key is sealed (autolock). */
  async keySealed(): Promise<boolean> {
    return (await pathExists(this.layout.nodeKey)) && isSealedKey(await readPrivate(this.layout.nodeKey));
  }

  /** Replaces key and certificate as a pair (and the root, when given). */
  writePair(pair: { keyPem: string; certPem: string; rootPem?: string }): Promise<void> {
    return serialized(this.layout.nodeKey, () => this.writePairNow(pair));
  }

  /** Writes node.key again in the cipher's current mode (sealed or clear), as a pair with its certificate; true when it wrote. `reseal`: a sealed key is written again too (under the cipher's new data key). */
  rewriteKey(options: { reseal?: boolean } = {}): Promise<boolean> {
    return serialized(this.layout.nodeKey, async () => {
      const pair = await this.load();
      if (pair === undefined) return false;
      const text = await readPrivate(this.layout.nodeKey);
      const sealed = isSealedKey(text);
      if (sealed === (this.hooks.cipher?.sealing() === true) && !(sealed && options.reseal === true)) return false;
      await this.writePairNow({ keyPem: pair.keyPem, certPem: pair.certPem });
      return true;
    });
  }

  private async writePairNow(pair: { keyPem: string; certPem: string; rootPem?: string }): Promise<void> {
    const step = (name: (typeof WRITE_STEPS)[number]): void => this.hooks.afterStep?.(name);
    const keyText = this.encode(pair.keyPem);
    if (pair.rootPem !== undefined) await writeFileAtomic(this.layout.rootCa, pair.rootPem, 0o644);
    await rm(this.keyNext, { force: true });
    await rm(this.certNext, { force: true });
    await writeNewFileSynced(this.keyNext, keyText, 0o600);
    step('key-written');
    await writeNewFileSynced(this.certNext, pair.certPem, 0o644);
    step('cert-written');
    await syncDir(this.layout.certificatesDir);
    step('dir-synced');
    await rename(this.keyNext, this.layout.nodeKey);
    step('key-renamed');
    await rename(this.certNext, this.layout.nodeCert);
    step('cert-renamed');
    await syncDir(this.layout.certificatesDir);
  }

  /**
   * Finishes a replacement whose new pair is complete and sound (the key
   * matches the certificate, which chains to the root), or drops it and keeps
   * the current pair. A write cut short by a full disk leaves a short key or
   * an empty certificate behind: those are never moved into place.
   * Only the owner of the data dir (the node's own process) recovers.
   */
  async recover(): Promise<void> {
    if (await pathExists(this.certNext)) {
      const keyFile = (await pathExists(this.keyNext)) ? this.keyNext : this.layout.nodeKey;
      const [keyText, certPem, rootPem] = await Promise.all([readPrivate(keyFile), readPrivate(this.certNext), readPrivate(this.layout.rootCa)]);
      if (pairHolds(this.decodeOrEmpty(keyText), certPem, rootPem)) {
        if (keyFile === this.keyNext) await rename(this.keyNext, this.layout.nodeKey);
        await rename(this.certNext, this.layout.nodeCert);
        await syncDir(this.layout.certificatesDir);
        return;
      }
    }
    await rm(this.keyNext, { force: true });
    await rm(this.certNext, { force: true });
  }

  /**
   * Loads the pair, refusing files others can read and a pair that does not
   * match. A reader in another process may arrive while the owner switches
   * the pair (two renames): it reads again until it sees one pair, so no
   * reader ever gets a new key with the old certificate. Only the owner
   * (`recover: true`) finishes an interrupted switch first.
   */
  async load(options: { recover?: boolean } = {}): Promise<KeyPair | undefined> {
    await checkPrivate(this.layout.dataDir, 'dir');
    if (!(await pathExists(this.layout.nodeCert)) && !(await pathExists(this.certNext))) return undefined;
    if (options.recover === true) await this.recover();
    await checkPrivate(this.layout.nodeKey, 'file');
    for (let attempt = 0; attempt < SWITCH_READS; attempt++) {
      const certPem = await readPrivate(this.layout.nodeCert);
      const [keyText, rootPem, again] = await Promise.all([
        readPrivate(this.layout.nodeKey),
        readPrivate(this.layout.rootCa),
        readPrivate(this.layout.nodeCert),
      ]);
      const keyPem = this.decode(keyText);
      if (certPem === again && pairHolds(keyPem, certPem)) return { keyPem, certPem, rootPem };
      await new Promise((resolve) => setTimeout(resolve, 5)); // the owner is between its two renames
    }
    throw new MusterError('STATE_CORRUPT', `${this.layout.nodeKey} does not match ${this.layout.nodeCert}`, {
      hint: "if the node's own process is not renewing right now, clear the node with 'muster leave' and join again",
    });
  }

  /** The certificate and root alone (public: readable while the key is sealed). */
  async loadPublic(): Promise<{ certPem: string; rootPem: string } | undefined> {
    await checkPrivate(this.layout.dataDir, 'dir');
    if (!(await pathExists(this.layout.nodeCert))) return undefined;
    const [certPem, rootPem] = await Promise.all([readPrivate(this.layout.nodeCert), readPrivate(this.layout.rootCa)]);
    return { certPem, rootPem };
  }

  /** A key read during recovery: a sealed one that cannot be opened is no key (the pending pair is then dropped). */
  private decodeOrEmpty(text: string): string {
    try {
      return this.decode(text);
    } catch (error) {
      if (error instanceof MusterError && error.code === 'MANAGER_LOCKED') throw error;
      return '';
    }
  }

  /** Deletes the node's certificate files (muster leave). */
  async remove(): Promise<void> {
    await rm(this.layout.certificatesDir, { recursive: true, force: true });
  }
}
