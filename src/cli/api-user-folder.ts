/**
 * An API user's folder (ca.pem, cert.pem, key.pem: what MUSTER_CERT_PATH and
 * DOCKER_CERT_PATH read) and its renewal with the certificate it holds
 * (issue 28): `muster ca renew-api-certificate --cert-path DIR`, and the CLI
 * itself when it uses a folder whose certificate is in the last third of
 * its lifetime. A fresh key is made here; key and certificate are replaced
 * as a pair by the node's own key writer (write `.next` files, fsync,
 * rename), so a crash never leaves a key that does not match its certificate.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyStore } from '../agent/key-store.js';
import { ApiClient } from '../api/client.js';
import { pathExists } from '../core/atomic-file.js';
import { MusterError, isMusterError } from '../core/errors.js';
import { roleFromOu } from '../core/roles.js';
import { createCsr } from '../pki/csr.js';
import { generateNodeKey } from '../pki/keys.js';
import { readNameFields } from '../pki/name.js';
import type { CliContext } from './context.js';

/** The files of an API user's folder. */
export function apiUserFiles(dir: string): { ca: string; cert: string; key: string } {
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
}

/** The folder's files as the key writer names them: the folder is its own certificates dir. */
function folderKeyStore(dir: string): KeyStore {
  const files = apiUserFiles(dir);
  return new KeyStore({ dataDir: dir, certificatesDir: dir, nodeKey: files.key, nodeCert: files.cert, rootCa: files.ca });
}

/** The credentials an API user's folder holds. */
export interface ApiUserCredentials {
  certPem: string;
  keyPem: string;
  rootPem: string;
}

/** Reads the folder, first finishing (or dropping) a renewal a crash cut short. */
export async function readApiUserFolder(dir: string): Promise<ApiUserCredentials> {
  const files = apiUserFiles(dir);
  if (await pathExists(`${files.cert}.next`)) await folderKeyStore(dir).recover();
  const read = async (file: string, what: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8');
    } catch {
      throw new MusterError('USAGE', `cannot read the ${what} ${file}`, {
        hint: "an API user's folder holds ca.pem, cert.pem and key.pem, as 'muster ca create-api-certificate' writes it",
      });
    }
  };
  const [certPem, keyPem, rootPem] = await Promise.all([read(files.cert, 'client certificate'), read(files.key, 'client key'), read(files.ca, 'root CA')]);
  return { certPem, keyPem, rootPem };
}

/** True when the certificate is an API user's (OU=swarm-admin) in the last third of its lifetime and not yet expired: time to renew. */
export function dueForRenewal(certPem: string, now: number): boolean {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return false;
  }
  if (roleFromOu(readNameFields(cert.subject).organizationalUnit) !== 'admin') return false;
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  return now < notAfter && notAfter - now <= (notAfter - notBefore) / 3;
}

/**
 * Renews the certificate of the folder `dir` at manager `addr` with the
 * certificate it holds: a new key, the manager's new certificate (same
 * name, same lifetime) and the current root bundle replace the files.
 */
export async function renewApiUserFolder(params: {
  addr: string;
  dir: string;
  current: ApiUserCredentials;
}): Promise<{ credentials: ApiUserCredentials; name: string; notAfter: string }> {
  const client = new ApiClient({ managers: [params.addr], tls: params.current });
  try {
    const key = await generateNodeKey(); // made here; only the CSR travels
    const renewed = await client.call('renewUser', { body: { csr: createCsr({ privateKey: key.privateKey }) } });
    const credentials = { certPem: renewed.certificate, keyPem: key.privateKeyPem, rootPem: renewed.rootCA };
    await folderKeyStore(params.dir).writePair(credentials);
    return { credentials, name: renewed.name, notAfter: renewed.notAfter };
  } finally {
    await client.close();
  }
}

/**
 * The folder's credentials for a client command, renewed first when the
 * certificate is near its expiry. A renewal that fails is told on stderr
 * and the command goes on with the certificate it has (still valid).
 */
export async function credentialsNearExpiryRenewed(ctx: CliContext, addr: string, dir: string): Promise<ApiUserCredentials> {
  const current = await readApiUserFolder(dir);
  if (!dueForRenewal(current.certPem, ctx.clock.now())) return current;
  try {
    const renewed = await renewApiUserFolder({ addr, dir, current });
    ctx.stderr.write(`Renewed the certificate of API user ${renewed.name} in ${dir}: it expired soon; the new one is valid until ${renewed.notAfter}.\n`);
    return renewed.credentials;
  } catch (error) {
    const why = isMusterError(error) ? `${error.code}: ${error.message}` : String(error);
    ctx.stderr.write(`warning: the certificate in ${dir} expires soon and could not be renewed (${why}); using it as it is\n`);
    return current;
  }
}
