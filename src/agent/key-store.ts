/**
 * The one writer for a node's key material (SwarmKit's KeyReadWriter).
 * Key and certificate are replaced as a pair: both are written to `.next`
 * files and fsync'd, the certificate last (its presence marks a complete
 * pending pair), then renamed into place. `recover()` finishes or rolls
 * back an interrupted replacement, so a crash at any point leaves either the
 * old matching pair or the new one. Keys are 0600, folders 0700.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { constants } from 'node:fs';
import { readFile, rename, rm } from 'node:fs/promises';
import { ensurePrivateDir, pathExists, syncDir, writeFileAtomic, writeNewFileSynced } from '../core/atomic-file.js';
import { MusterError } from '../core/errors.js';
import type { DataDirLayout } from '../config/paths.js';
import { checkPrivate } from '../core/private-file.js';
import { isIssuedBy, readBundle } from '../pki/peer.js';

/** How many times a reader looks again while the owner switches the pair (5 ms apart). */
const SWITCH_READS = 100;

/** Reads a file of the data dir, never through a symbolic link. */
function readPrivate(path: string): Promise<string> {
  return readFile(path, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW });
}

/** True when the key matches the certificate and, given a root, the certificate chains to it. */
function pairHolds(keyPem: string, certPem: string, rootPem?: string): boolean {
  try {
    const cert = new X509Certificate(certPem);
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return false;
    return rootPem === undefined || readBundle(rootPem).some((root) => isIssuedBy(cert, root));
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

/** Fault injection for tests: throw from `afterStep` to simulate a crash there. */
export interface KeyStoreHooks {
  afterStep?: (step: string) => void;
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

  /** Replaces key and certificate as a pair (and the root, when given). */
  async writePair(pair: { keyPem: string; certPem: string; rootPem?: string }): Promise<void> {
    const step = (name: (typeof WRITE_STEPS)[number]): void => this.hooks.afterStep?.(name);
    if (pair.rootPem !== undefined) await writeFileAtomic(this.layout.rootCa, pair.rootPem, 0o644);
    await rm(this.keyNext, { force: true });
    await rm(this.certNext, { force: true });
    await writeNewFileSynced(this.keyNext, pair.keyPem, 0o600);
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
      const [keyPem, certPem, rootPem] = await Promise.all([readPrivate(keyFile), readPrivate(this.certNext), readPrivate(this.layout.rootCa)]);
      if (pairHolds(keyPem, certPem, rootPem)) {
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
      const [keyPem, rootPem, again] = await Promise.all([readPrivate(this.layout.nodeKey), readPrivate(this.layout.rootCa), readPrivate(this.layout.nodeCert)]);
      if (certPem === again && pairHolds(keyPem, certPem)) return { keyPem, certPem, rootPem };
      await new Promise((resolve) => setTimeout(resolve, 5)); // the owner is between its two renames
    }
    throw new MusterError('STATE_CORRUPT', `${this.layout.nodeKey} does not match ${this.layout.nodeCert}`, {
      hint: "if the node's own process is not renewing right now, clear the node with 'muster leave' and join again",
    });
  }

  /** Deletes the node's certificate files (muster leave). */
  async remove(): Promise<void> {
    await rm(this.layout.certificatesDir, { recursive: true, force: true });
  }
}
