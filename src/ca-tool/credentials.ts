/**
 * The files of muster-ca: loading cluster.crt and cluster.key from the
 * input folder, making keys, and writing a certificate and its key into the
 * output folder, 0600, atomically, and never over an existing file.
 */
import { generateKeyPair, type KeyObject } from 'node:crypto';
import { link, readFile, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { pathExists, syncDir, writeNewFileSynced } from '../core/atomic-file.js';
import { MusterError } from '../core/errors.js';
import { ROOT_FILES, parseFlockerRoot, type CredentialKey, type FlockerRoot, type KeyType } from './profiles.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/** Makes a key of `type` off the main thread (RSA-4096 takes about a second). */
export async function generateCredentialKey(type: KeyType): Promise<CredentialKey> {
  if (type === 'p256') {
    const { privateKey, publicKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
    return { privateKey, publicKey, kind: 'ec-p256' };
  }
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', { modulusLength: 4096, publicExponent: 0x10001 });
  return { privateKey, publicKey, kind: 'rsa' };
}

/** A private key as PKCS#8 PEM, the form flocker-ca and muster write. */
export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** What the operating system said about `path`, as a FILE_ACCESS error a person can act on. */
function fileError(error: unknown, path: string, doing: string): MusterError {
  const code = (error as { code?: unknown }).code;
  const why =
    code === 'ENOENT'
      ? 'it does not exist'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EISDIR'
          ? 'it is a folder'
          : code === 'ENOTDIR'
            ? 'a part of the path is not a folder'
            : code === 'EROFS'
              ? 'the file system is read-only'
              : code === 'ENOSPC'
                ? 'no space left on the device'
                : typeof code === 'string'
                  ? code
                  : String(error);
  return new MusterError('FILE_ACCESS', `cannot ${doing} ${path}: ${why}`, { cause: error });
}

/**
 * Loads the root from `dir`. A missing cluster.crt or cluster.key says to
 * run `muster-ca initialize` first, as flocker-ca does; a file that is not
 * what it should be says which one.
 */
export async function loadRoot(dir: string): Promise<FlockerRoot> {
  const read = async (name: string): Promise<string> => {
    const path = join(dir, name);
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ENOENT') {
        throw new MusterError('FILE_ACCESS', `unable to load certificate authority file: ${path} does not exist`, {
          hint: `run 'muster-ca initialize <name>' to generate a new certificate authority, or point --inputpath at the folder that holds ${ROOT_FILES.cert} and ${ROOT_FILES.key}`,
        });
      }
      throw fileError(error, path, 'read the certificate authority file');
    }
  };
  const certPem = await read(ROOT_FILES.cert);
  const keyPem = await read(ROOT_FILES.key);
  try {
    return parseFlockerRoot(certPem, keyPem);
  } catch (error) {
    if (!(error instanceof MusterError)) throw error;
    const file = error.code === 'CA_KEY_INVALID' || error.code === 'CA_UNSUPPORTED_KEY' ? ROOT_FILES.key : ROOT_FILES.cert;
    const message = error.message.includes(ROOT_FILES.cert) || error.message.includes(ROOT_FILES.key) ? error.message : `${join(dir, file)}: ${error.message}`;
    throw new MusterError(error.code, message, { cause: error, ...(error.hint === undefined ? {} : { hint: error.hint }) });
  }
}

/** Refuses an output folder that does not exist (flocker-ca does not create one either). */
export async function checkOutputDir(dir: string): Promise<void> {
  let info;
  try {
    info = await stat(dir);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT')
      throw new MusterError('FILE_ACCESS', `the output folder ${dir} does not exist`, { hint: `create it first: mkdir -m 0700 ${dir}` });
    throw fileError(error, dir, 'use the output folder');
  }
  if (!info.isDirectory()) throw new MusterError('FILE_ACCESS', `the output path ${dir} is not a folder`);
}

/** Refuses, before anything is made, when any of `paths` exists: muster-ca never overwrites a certificate or a key. */
export async function refuseExisting(paths: readonly string[], hint: string): Promise<void> {
  const existing: string[] = [];
  for (const path of paths) if (await pathExists(path)) existing.push(path);
  if (existing.length > 0) {
    throw new MusterError(
      'FILE_EXISTS',
      `${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}; muster-ca never overwrites a certificate or a key`,
      { hint },
    );
  }
}

/**
 * Puts `data` at `path` with mode 0600, only if nothing is there: written
 * to a temporary file first and fsynced, then hard-linked into place, which
 * fails rather than replace a file that appeared meanwhile (rename would
 * replace it). A crash leaves the whole file or none of it.
 */
async function createFileAtomic(path: string, data: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    await writeNewFileSynced(temp, data, 0o600);
    await link(temp, path);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'EEXIST' && (await pathExists(path))) {
      throw new MusterError('FILE_EXISTS', `${path} already exists; muster-ca never overwrites a certificate or a key`);
    }
    throw fileError(error, path, 'write');
  } finally {
    await rm(temp, { force: true });
  }
}

/** Writes a certificate and its key (both 0600), the certificate first as flocker-ca does; if the key cannot be written, the certificate is taken away again. */
export async function writeCredential(files: { cert: string; key: string }, pems: { cert: string; key: string }): Promise<void> {
  await createFileAtomic(files.cert, pems.cert);
  try {
    await createFileAtomic(files.key, pems.key);
  } catch (error) {
    await unlink(files.cert).catch(() => {});
    throw error;
  }
  await syncDir(dirname(files.cert));
}
