/** `muster ca create-api-certificate | revoke-api-certificate`: API users (Flocker's model: the certificate is the identity). */
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ensurePrivateDir, pathExists, writeFileAtomic } from '../../core/atomic-file.js';
import { formatDuration, parseCertExpiry } from '../../core/duration.js';
import { MusterError } from '../../core/errors.js';
import { createCsr } from '../../pki/csr.js';
import { generateNodeKey } from '../../pki/keys.js';
import { withConnection, type ConnectFlags } from '../connect.js';
import type { CliContext } from '../context.js';
import { paint } from '../output.js';
import { act, connectFlags, withConnectFlags, type Done } from '../options.js';
import { readEnv } from '../settings.js';

/**
 * `muster ca create-api-certificate NAME [--out DIR] [--expiry DUR]`: writes
 * ca.pem, cert.pem and key.pem into DIR (default ./NAME), the layout
 * MUSTER_CERT_PATH (like DOCKER_CERT_PATH) reads. Never overwrites a key.
 */
async function createApiCertificateCommand(ctx: CliContext, name: string, flags: ConnectFlags & { out?: string; expiry?: string }): Promise<number> {
  const outDir = resolve(flags.out ?? name);
  const files = { ca: join(outDir, 'ca.pem'), cert: join(outDir, 'cert.pem'), key: join(outDir, 'key.pem') };
  if (await pathExists(files.key)) throw new MusterError('FILE_EXISTS', `${files.key} already exists; it was not replaced`);
  const expiry = flags.expiry === undefined ? undefined : formatDuration(parseCertExpiry(flags.expiry)); // refuse bad input before connecting
  return withConnection(ctx, flags, async ({ client }) => {
    const key = await generateNodeKey(); // made here; only the CSR travels
    const issued = await client.createUser({ name, csr: createCsr({ privateKey: key.privateKey, subject: { commonName: name } }), ...(expiry === undefined ? {} : { expiry }) });
    await ensurePrivateDir(outDir);
    await writeFileAtomic(files.key, key.privateKeyPem, 0o600);
    await writeFileAtomic(files.cert, issued.certificate, 0o644);
    await writeFileAtomic(files.ca, issued.rootCA, 0o644);
    const bold = (text: string): string => paint(text, 'bold', readEnv(ctx).colour(ctx.stdout));
    ctx.stdout.write(
      `Created ${outDir}/{ca.pem,cert.pem,key.pem} for API user ${name}, valid until ${issued.notAfter}.\n` +
        `Give the folder to the user over a secure channel (scp, sftp) and delete your copy; anyone with key.pem can administer the cluster.\n\n` +
        `Use it with muster:\n\n    ${bold(`export MUSTER_HOST=${client.address} MUSTER_CERT_PATH=${outDir}`)}\n    ${bold('muster node ls')}\n\n` +
        `or with curl:\n\n    ${bold(`curl --cacert ${files.ca} --cert ${files.cert} --key ${files.key} https://${client.address}/v1/nodes`)}\n\n`,
    );
    return 0;
  });
}

/** `muster ca revoke-api-certificate NAME`: the user's certificates are refused from now on. */
async function revokeApiCertificateCommand(ctx: CliContext, name: string, flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    const result = await client.revokeUser(name);
    ctx.stdout.write(
      result.revoked === 0
        ? `API user ${name} had no valid certificates left to revoke.\n`
        : `Revoked ${result.revoked} certificate${result.revoked === 1 ? '' : 's'} of API user ${name}; the manager refuses ${result.revoked === 1 ? 'it' : 'them'} from now on.\n`,
    );
    return 0;
  });
}

/** Registers the ca commands. */
export function registerCa(program: Command, ctx: CliContext, done: Done): void {
  const run = act(done);
  const ca = program.command('ca').description('certificate authority tasks');
  withConnectFlags(
    ca
      .command('create-api-certificate')
      .description('create a certificate and key for an API user (OU=swarm-admin), usable with MUSTER_CERT_PATH and curl --cert')
      .argument('<name>', 'the user name, e.g. alice')
      .option('--out <dir>', 'where to write ca.pem, cert.pem and key.pem (default: ./NAME)')
      .option('--expiry <duration>', "lifetime of the certificate, e.g. '720h' (default: the cluster's certificate expiry)"),
  ).action(
    run((name: string, options: Record<string, unknown>) =>
      createApiCertificateCommand(ctx, name, { ...connectFlags(options), ...(typeof options.out === 'string' ? { out: options.out } : {}), ...(typeof options.expiry === 'string' ? { expiry: options.expiry } : {}) }),
    ),
  );
  withConnectFlags(ca.command('revoke-api-certificate').description("revoke an API user's certificates; the manager refuses them from then on").argument('<name>', 'the user name')).action(
    run((name: string, options: Record<string, unknown>) => revokeApiCertificateCommand(ctx, name, connectFlags(options))),
  );
}
