/** `muster ca create-api-certificate | revoke-api-certificate`: API users (Flocker's model: the certificate is the identity). */
import { resolve, join } from 'node:path';
import type { Command } from 'commander';
import { ensurePrivateDir, writeFileAtomic } from '../../core/atomic-file.js';
import { createCsr } from '../../pki/csr.js';
import { generateNodeKey } from '../../pki/keys.js';
import { withConnection, type ConnectFlags } from '../connect.js';
import type { CliContext } from '../context.js';
import { paint } from '../output.js';
import { act, connectFlags, withConnectFlags, type Done } from '../options.js';
import { readEnv } from '../settings.js';

/** `muster ca create-api-certificate NAME [--out DIR]` */
async function createApiCertificateCommand(ctx: CliContext, name: string, flags: ConnectFlags & { out?: string }): Promise<number> {
  const outDir = resolve(flags.out ?? '.');
  return withConnection(ctx, flags, async ({ client }) => {
    const key = await generateNodeKey(); // made here; only the CSR travels
    const issued = await client.createUser({ name, csr: createCsr({ privateKey: key.privateKey, subject: { commonName: name } }) });
    await ensurePrivateDir(outDir);
    const certFile = join(outDir, `${name}.crt`);
    const keyFile = join(outDir, `${name}.key`);
    const rootFile = join(outDir, 'root-ca.crt');
    await writeFileAtomic(keyFile, key.privateKeyPem, 0o600);
    await writeFileAtomic(certFile, issued.certificate, 0o644);
    await writeFileAtomic(rootFile, issued.rootCA, 0o644);
    const colour = readEnv(ctx).colour(ctx.stdout);
    ctx.stdout.write(
      `Created ${certFile} and ${keyFile} (API user ${name}, valid until ${issued.notAfter}), and ${rootFile}.\n` +
        `Give these to the API user over a secure channel (scp, sftp) and delete your copies; anyone with ${name}.key can administer the cluster.\n\n` +
        `List the nodes with curl:\n\n    ${paint(`curl --cacert ${rootFile} --cert ${certFile} --key ${keyFile} https://${client.address}/v1/nodes`, 'bold', colour)}\n\n`,
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
      .description('create a certificate and key for an API user (OU=swarm-admin); usable with curl --cert')
      .argument('<name>', 'the user name, e.g. alice')
      .option('--out <dir>', 'where to write NAME.crt, NAME.key and root-ca.crt', '.'),
  ).action(run((name: string, options: Record<string, unknown>) => createApiCertificateCommand(ctx, name, { ...connectFlags(options), out: String(options.out) })));
  withConnectFlags(ca.command('revoke-api-certificate').description("revoke an API user's certificates; the manager refuses them from then on").argument('<name>', 'the user name')).action(
    run((name: string, options: Record<string, unknown>) => revokeApiCertificateCommand(ctx, name, connectFlags(options))),
  );
}
