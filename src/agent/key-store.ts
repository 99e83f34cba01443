/**
 * The one writer for a node's key material (SwarmKit's KeyReadWriter).
 * Key and certificate are replaced as a pair: both are written to `.next`
 * files and fsync'd, the certificate last (its presence marks a complete
 * pending pair), then renamed into place. `recover()` finishes or rolls
 * back an interrupted replacement, so a crash at any point leaves either the
 * old matching pair or the new one. Keys are 0600, folders 0700.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile, rename, rm, stat } from 'node:fs/promises';
import { ensurePrivateDir, pathExists, syncDir, writeFileAtomic, writeNewFileSynced } from '../core/atomic-file.js';
import { MusterError } from '../core/errors.js';
import type { DataDirLayout } from '../config/paths.js';

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

  /** Finishes a replacement whose pair was complete, or drops one that was not. */
  async recover(): Promise<void> {
    if (await pathExists(this.certNext)) {
      if (await pathExists(this.keyNext)) await rename(this.keyNext, this.layout.nodeKey);
      await rename(this.certNext, this.layout.nodeCert);
      await syncDir(this.layout.certificatesDir);
    } else {
      await rm(this.keyNext, { force: true });
    }
  }

  /** Loads the pair (after recovery), refusing files others can read and a pair that does not match. */
  async load(): Promise<KeyPair | undefined> {
    await this.checkMode(this.layout.dataDir, 0o077, 'DATA_DIR_INSECURE', `chmod 0700 ${this.layout.dataDir}`);
    if (!(await pathExists(this.layout.nodeCert)) && !(await pathExists(this.certNext))) return undefined;
    await this.recover();
    await this.checkMode(this.layout.nodeKey, 0o077, 'KEY_FILE_INSECURE', `chmod 0600 ${this.layout.nodeKey}`);
    const [keyPem, certPem, rootPem] = await Promise.all([
      readFile(this.layout.nodeKey, 'utf8'),
      readFile(this.layout.nodeCert, 'utf8'),
      readFile(this.layout.rootCa, 'utf8'),
    ]);
    let matches = false;
    try {
      matches = new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
    } catch {
      matches = false;
    }
    if (!matches) throw new MusterError('STATE_CORRUPT', `${this.layout.nodeKey} does not match ${this.layout.nodeCert}`, { hint: "re-join the cluster with 'muster join'" });
    return { keyPem, certPem, rootPem };
  }

  /** Deletes the node's certificate files (muster leave). */
  async remove(): Promise<void> {
    await rm(this.layout.certificatesDir, { recursive: true, force: true });
  }

  private async checkMode(path: string, forbidden: number, code: 'DATA_DIR_INSECURE' | 'KEY_FILE_INSECURE', fix: string): Promise<void> {
    let mode: number;
    try {
      mode = (await stat(path)).mode;
    } catch {
      return;
    }
    if ((mode & forbidden) !== 0) {
      throw new MusterError(code, `${path} is readable or writable by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')})`, { hint: `run: ${fix}` });
    }
  }
}
