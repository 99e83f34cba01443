/**
 * `muster ca [--rotate …]`: the root CA and its rotation; `muster ca
 * create-api-certificate | revoke-api-certificate`: API users (Flocker's
 * model: the certificate is the identity).
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ensurePrivateDir, pathExists, writeFileAtomic } from '../../core/atomic-file.js';
import { formatDuration, parseCertExpiry, parseDuration } from '../../core/duration.js';
import { ID_LENGTH } from '../../core/ids.js';
import { MusterError } from '../../core/errors.js';
import { createCsr } from '../../pki/csr.js';
import { generateNodeKey } from '../../pki/keys.js';
import { CertificateView, NODES_PAGE, type RotationRequest, type RotationStatus } from '../../api/schemas.js';
import { parseHostTarget, withConnection, type ConnectFlags } from '../connect.js';
import { readApiUserFolder, renewApiUserFolder } from '../api-user-folder.js';
import type { CliContext } from '../context.js';
import {
  emit,
  formatHelp,
  listFields,
  listPrinter,
  listText,
  pagedTablePrinter,
  parseListFormat,
  type ListField,
  type ListFields,
  type ListPrinter,
} from '../list-format.js';
import { paint, relativeTime } from '../output.js';
import { act, collect, connectFlags, withConnectFlags, type Done } from '../options.js';
import { readExternalCas } from '../ca-files.js';
import { apiUserLines, progressLines } from '../rotation-progress.js';
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
    const issued = await client.call('createUser', {
      body: {
        name,
        csr: createCsr({ privateKey: key.privateKey, subject: { commonName: name } }),
        ...(expiry === undefined ? {} : { expiry }),
      },
    });
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

/**
 * `muster ca renew-api-certificate --cert-path DIR`: renews the API user's
 * certificate in DIR with the certificate DIR holds (same name, same
 * lifetime, a fresh key); the files are replaced in place. Talks to --host
 * or MUSTER_HOST.
 */
async function renewApiCertificateCommand(ctx: CliContext, flags: { certPath?: string; host?: string }): Promise<number> {
  if (flags.certPath === undefined) throw new MusterError('USAGE', 'renew-api-certificate needs --cert-path DIR, the folder create-api-certificate wrote');
  const host = flags.host ?? readEnv(ctx).host;
  if (host === undefined || host === '')
    throw new MusterError('USAGE', 'renew-api-certificate needs the address of a manager', { hint: 'pass --host HOST:PORT or set MUSTER_HOST' });
  const target = parseHostTarget(host);
  if (target.kind !== 'tcp') throw new MusterError('USAGE', "an API user renews over TCP: --host HOST[:PORT], not a manager's local socket");
  const dir = resolve(flags.certPath);
  const renewed = await renewApiUserFolder({ addr: target.addr, dir, current: await readApiUserFolder(dir) });
  ctx.stdout.write(`Renewed the certificate of API user ${renewed.name} in ${dir}/{ca.pem,cert.pem,key.pem}: valid until ${renewed.notAfter}. The old certificate stays valid until it expires.
`);
  return 0;
}

/**
 * `muster ca admin-anchor [--out FILE]`: the anchor that admits API users
 * only (the admin CA), for services that check only the chain: dockerd
 * --tlscacert, nginx ssl_client_certificate. Written atomically (0644) or
 * printed.
 */
async function adminAnchorCommand(ctx: CliContext, flags: ConnectFlags & { out?: string }): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    const anchor = (await client.bytes('adminAnchor')).toString('utf8');
    if (flags.out === undefined) {
      ctx.stdout.write(anchor);
      return 0;
    }
    const out = resolve(flags.out);
    await writeFileAtomic(out, anchor, 0o644);
    ctx.stdout.write(
      `Wrote the admin anchor to ${out}. A service that trusts it alone admits API users' certificates (their cert.pem) and no node's.
` +
        `Use it as dockerd --tlscacert, or nginx ssl_client_certificate with ssl_verify_client on.
`,
    );
    return 0;
  });
}

/** `muster ca revoke-api-certificate NAME`: the user's certificates are refused from now on. */
async function revokeApiCertificateCommand(ctx: CliContext, name: string, flags: ConnectFlags): Promise<number> {
  return withConnection(ctx, flags, async ({ client }) => {
    const result = await client.call('revokeUser', { params: { name: name } });
    ctx.stdout.write(
      result.revoked === 0
        ? `API user ${name} had no valid certificates left to revoke.\n`
        : `Revoked ${result.revoked} certificate${result.revoked === 1 ? '' : 's'} of API user ${name}; the manager refuses ${result.revoked === 1 ? 'it' : 'them'} from now on.\n`,
    );
    return 0;
  });
}

/** The columns of `ca certs`, by their template names. */
function certificateColumns(now: number): Record<string, ListField<CertificateView>> {
  return {
    Serial: { header: 'SERIAL', value: (c) => c.serial },
    Subject: { header: 'NODE/USER', value: (c) => c.subject },
    Role: { header: 'ROLE', value: (c) => c.role },
    Kind: { header: 'KIND', value: (c) => c.kind },
    Status: { header: 'STATUS', value: (c) => c.status },
    Expires: { header: 'EXPIRES', value: (c) => relativeTime(Date.parse(c.notAfter), now) },
  };
}

/** What `ca certs --format` templates may name: the table's columns, then the JSON fields (`.NotAfter`, `.IssuedAt`…). */
function certificateFields(now: number): ListFields<CertificateView> {
  return listFields(certificateColumns(now), Object.keys(CertificateView.properties));
}

/** Column widths known before any row, so pages line up: a 20-byte serial in hex, a node ID, the longest role, kind and status words. */
const CERT_WIDTHS = [40, ID_LENGTH, 'manager'.length, 'renew'.length, 'superseded'.length];

/**
 * `muster ca certs [--expiring DUR] [-q] [--format …]`: the certificates the
 * managers issued, a page at a time. With --expiring, only the valid ones
 * (not superseded, revoked or expired) that expire within DUR, and their
 * count on stderr: the answer to "what will stop working soon?".
 */
async function listCertificatesCommand(ctx: CliContext, flags: ConnectFlags & { expiring?: string; quiet?: boolean; format?: string }): Promise<number> {
  const now = ctx.clock.now();
  const format = parseListFormat(flags.format, certificateFields(now));
  const within = flags.expiring === undefined ? undefined : parseDuration(flags.expiring);
  const keep = (c: CertificateView): boolean => within === undefined || (c.status === 'valid' && Date.parse(c.notAfter) - now <= within);
  const pageSize = readEnv(ctx).pageSize ?? NODES_PAGE.default;
  return withConnection(ctx, flags, async ({ client }) => {
    const columns = Object.values(certificateColumns(now));
    const printer: ListPrinter<CertificateView> =
      flags.quiet === true
        ? { page: (certs) => certs.map((c) => `${c.serial}\n`).join(''), end: () => '' }
        : listPrinter(format, () =>
            pagedTablePrinter(
              columns.map((c) => c.header),
              (cert: CertificateView) => columns.map((c) => listText(c.value(cert))),
              CERT_WIDTHS,
            ),
          );
    let count = 0;
    for await (const page of client.certificatePages({ pageSize })) {
      const kept = page.filter(keep);
      count += kept.length;
      await emit(ctx.stdout, printer.page(kept));
    }
    await emit(ctx.stdout, printer.end());
    if (within !== undefined && flags.quiet !== true) {
      ctx.stderr.write(`${count === 0 ? 'no' : count} certificate${count === 1 ? ' expires' : 's expire'} within ${flags.expiring}\n`);
    }
    return 0;
  });
}

/** Flags of `muster ca`. */
export interface CaFlags extends ConnectFlags {
  rotate?: boolean;
  caCert?: string;
  caKey?: string;
  externalCa?: string[];
  /** Lets an --external-ca url be plain http://. */
  externalCaInsecure?: boolean;
  certExpiry?: string;
  detach?: boolean;
  quiet?: boolean;
}

async function readInput(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    throw new MusterError('USAGE', `cannot read ${file}`);
  }
}

/** Waits `ms` on the injected clock. */
const pause = (ctx: CliContext, ms: number): Promise<void> => new Promise((resolve) => void ctx.clock.setTimer(ms, resolve));

/**
 * `muster ca`: prints the current root. `muster ca --rotate [--ca-cert F
 * --ca-key F] [--cert-expiry DUR] [--detach] [-q]`: rotates the cluster to a
 * new root (founded, or given), shows progress as `docker swarm ca --rotate`
 * does and prints the new root once every node holds a certificate under it.
 */
export async function caCommand(ctx: CliContext, flags: CaFlags): Promise<number> {
  const rotating = flags.rotate === true;
  if (!rotating && (flags.caCert !== undefined || flags.caKey !== undefined || flags.certExpiry !== undefined || flags.detach === true)) {
    throw new MusterError('USAGE', '--ca-cert, --ca-key, --cert-expiry and --detach go with --rotate');
  }
  const external = flags.externalCa ?? [];
  if (external.length > 0 && (flags.caCert === undefined || flags.caKey !== undefined)) {
    throw new MusterError('USAGE', '--external-ca needs --ca-cert (the new root) and no --ca-key (the external CA holds it)');
  }
  if (external.length === 0 && (flags.caCert === undefined) !== (flags.caKey === undefined))
    throw new MusterError('USAGE', '--ca-cert and --ca-key go together');
  if (flags.certExpiry !== undefined) parseCertExpiry(flags.certExpiry);
  const request: RotationRequest = {};
  if (flags.caCert !== undefined) request.caCertPem = await readInput(flags.caCert);
  if (flags.caKey !== undefined) request.caKeyPem = await readInput(flags.caKey);
  if (external.length > 0 || flags.externalCaInsecure === true) request.externalCAs = await readExternalCas(external, flags.externalCaInsecure === true);
  if (flags.certExpiry !== undefined) request.certExpiry = flags.certExpiry;
  return withConnection(ctx, flags, async ({ client }) => {
    if (!rotating) {
      ctx.stdout.write((await client.bytes('rootCa')).toString('utf8'));
      return 0;
    }
    const say = (lines: string[]): void => {
      if (flags.quiet !== true) for (const line of lines) ctx.stdout.write(`${line}\n`);
    };
    // On stderr: stdout ends with the new root, which scripts keep.
    const note = (lines: string[]): void => {
      if (flags.quiet !== true) for (const line of lines) ctx.stderr.write(`${line}\n`);
    };
    let status = await client.call('rotateRoot', { body: request });
    const target = status.targetDigest ?? status.rootDigest;
    if (flags.detach === true) {
      say([
        `desired root digest: sha256:${target}`,
        "the rotation runs in the background; 'muster ca --rotate' again replaces its target, 'muster ca' prints the root",
      ]);
      note(apiUserLines(status));
      return 0;
    }
    let previous: RotationStatus | undefined;
    for (;;) {
      say(progressLines(status, previous, target));
      if (!status.rotating) break;
      previous = status;
      await pause(ctx, PROGRESS_POLL_MS);
      status = await client.call('rotationStatus');
      if (status.rotating && status.targetDigest !== target)
        throw new MusterError('CA_ROTATION_REPLACED', `another rotation, to sha256:${status.targetDigest ?? '?'}, replaced this one`);
    }
    if (status.rootDigest !== target) throw new MusterError('CA_ROTATION_REPLACED', `the root is now sha256:${status.rootDigest}, not this rotation's`);
    ctx.stdout.write((await client.bytes('rootCa')).toString('utf8'));
    note(apiUserLines(status));
    return 0;
  });
}

/** How often `ca --rotate` asks how the rotation stands. */
const PROGRESS_POLL_MS = 1_000;

/** Registers the ca commands. */
export function registerCa(program: Command, ctx: CliContext, done: Done): void {
  const run = act(done);
  const ca = withConnectFlags(
    program
      .command('ca')
      .description('print the root CA; rotate it (--rotate); API-user certificates')
      .option('--rotate', 'rotate the root CA: a new one is founded unless --ca-cert/--ca-key give it; nodes move to it without downtime')
      .option('--ca-cert <file>', 'the new root certificate (with --ca-key)')
      .option('--ca-key <file>', 'the key of --ca-cert')
      .option(
        '--external-ca <spec>',
        'external CAs that hold the key of --ca-cert (repeatable): protocol=cfssl,url=URL[,cacert=FILE][,authkey=HEX]',
        collect,
        [],
      )
      .option('--external-ca-insecure', 'allow an --external-ca url that is plain http:// (requests and certificates then travel in clear)')
      .option('--cert-expiry <duration>', 'also change the lifetime of node certificates')
      .option('-d, --detach', 'return at once instead of waiting for the rotation to complete')
      .option('-q, --quiet', 'no progress output'),
  ).action(
    run((options: Record<string, unknown>) =>
      caCommand(ctx, {
        ...connectFlags(options),
        rotate: options.rotate === true,
        ...(typeof options.caCert === 'string' ? { caCert: options.caCert } : {}),
        ...(typeof options.caKey === 'string' ? { caKey: options.caKey } : {}),
        externalCa: options.externalCa as string[],
        externalCaInsecure: options.externalCaInsecure === true,
        ...(typeof options.certExpiry === 'string' ? { certExpiry: options.certExpiry } : {}),
        detach: options.detach === true,
        quiet: options.quiet === true,
      }),
    ),
  );
  withConnectFlags(
    ca
      .command('create-api-certificate')
      .description('create a certificate and key for an API user (OU=swarm-admin), usable with MUSTER_CERT_PATH and curl --cert')
      .argument('<name>', 'the user name, e.g. alice')
      .option('--out <dir>', 'where to write ca.pem, cert.pem and key.pem (default: ./NAME)')
      .option('--expiry <duration>', "lifetime of the certificate, e.g. '720h' (default: the cluster's certificate expiry)"),
  ).action(
    run((name: string, options: Record<string, unknown>) =>
      createApiCertificateCommand(ctx, name, {
        ...connectFlags(options),
        ...(typeof options.out === 'string' ? { out: options.out } : {}),
        ...(typeof options.expiry === 'string' ? { expiry: options.expiry } : {}),
      }),
    ),
  );
  withConnectFlags(
    ca
      .command('certs')
      .description("list the certificates the managers issued: nodes' and API users', with what became of each")
      .option('--expiring <duration>', "only valid certificates that expire within this long, e.g. '72h' (their count goes to stderr)")
      .option('-q, --quiet', 'print the serials only')
      .option('--format <format>', formatHelp(certificateFields(0))),
  ).action(
    run((options: Record<string, unknown>) =>
      listCertificatesCommand(ctx, {
        ...connectFlags(options),
        ...(typeof options.expiring === 'string' ? { expiring: options.expiring } : {}),
        ...(typeof options.format === 'string' ? { format: options.format } : {}),
        quiet: options.quiet === true,
      }),
    ),
  );
  ca.command('renew-api-certificate')
    .description("renew an API user's certificate with the one it holds (same name and lifetime, a new key); the folder's files are replaced")
    .option('--cert-path <dir>', "the API user's folder (ca.pem, cert.pem, key.pem)")
    .option('-H, --host <host>', 'the manager: HOST[:PORT] or tcp://HOST[:PORT] (default: $MUSTER_HOST; port 4377)')
    .action(
      run((options: Record<string, unknown>) =>
        renewApiCertificateCommand(ctx, {
          ...(typeof options.certPath === 'string' ? { certPath: options.certPath } : {}),
          ...(typeof options.host === 'string' ? { host: options.host } : {}),
        }),
      ),
    );
  withConnectFlags(
    ca
      .command('admin-anchor')
      .description('the certificate that admits API users only (the admin CA), for dockerd --tlscacert or nginx ssl_client_certificate')
      .option('--out <file>', 'write it to this file (default: standard output)'),
  ).action(
    run((options: Record<string, unknown>) =>
      adminAnchorCommand(ctx, { ...connectFlags(options), ...(typeof options.out === 'string' ? { out: options.out } : {}) }),
    ),
  );
  withConnectFlags(
    ca
      .command('revoke-api-certificate')
      .description("revoke an API user's certificates; the manager refuses them from then on")
      .argument('<name>', 'the user name'),
  ).action(run((name: string, options: Record<string, unknown>) => revokeApiCertificateCommand(ctx, name, connectFlags(options))));
}
