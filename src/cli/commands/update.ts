/** `muster update [--cert-expiry DUR] [--external-ca SPEC …] [--autolock=true|false]`: change cluster settings. */
import type { Command } from 'commander';
import { formatDuration, parseCertExpiry } from '../../core/duration.js';
import { MusterError } from '../../core/errors.js';
import { readExternalCas } from '../ca-files.js';
import { withConnection, type ConnectFlags } from '../connect.js';
import { unlockKeyInstructions } from '../instructions.js';
import type { CliContext } from '../context.js';
import { act, collect, connectFlags, withConnectFlags, type Done } from '../options.js';

function parseBool(text: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new MusterError('USAGE', `--autolock takes true or false, got '${text.slice(0, 20)}'`);
}

/** `muster update` */
export async function updateCommand(
  ctx: CliContext,
  flags: ConnectFlags & { certExpiry?: string; externalCa?: string[]; externalCaInsecure?: boolean; autolock?: string },
): Promise<number> {
  const external = flags.externalCa ?? [];
  if (flags.certExpiry === undefined && external.length === 0 && flags.autolock === undefined) {
    throw new MusterError('USAGE', 'nothing to update', {
      hint: 'pass --cert-expiry DUR (e.g. 720h), --external-ca protocol=cfssl,url=… or --autolock=true|false',
    });
  }
  const autolock = flags.autolock === undefined ? undefined : parseBool(flags.autolock);
  // Refuse bad input before connecting.
  const ms = flags.certExpiry === undefined ? undefined : parseCertExpiry(flags.certExpiry);
  const insecure = flags.externalCaInsecure === true;
  const externalCAs = external.length === 0 && !insecure ? undefined : await readExternalCas(external, insecure);
  return withConnection(ctx, flags, async ({ client }) => {
    const view = await client.call('updateCluster', {
      body: {
        ...(ms === undefined ? {} : { certExpiry: formatDuration(ms) }),
        ...(externalCAs === undefined ? {} : { externalCAs }),
        ...(autolock === undefined ? {} : { autolock }),
      },
    });
    if (autolock === true) ctx.stdout.write(`Autolock is on.\n${unlockKeyInstructions(view.unlockKey ?? (await client.call('unlockKey')).unlockKey)}`);
    if (autolock === false) ctx.stdout.write('Autolock is off: managers start unlocked; their keys are in clear in their data dirs again.\n');
    if (ms !== undefined && view.ca.external) {
      ctx.stdout.write(
        `Certificate expiry set to ${view.certExpiry}, but an external CA signs for this cluster and its own profile sets the lifetime` +
          `${view.ca.externalLifetime === undefined ? '' : ` (it issues ${view.ca.externalLifetime} certificates)`}; nodes renew on that. Change the expiry of the CA's 'node' profile to change it.\n`,
      );
    } else if (ms !== undefined) {
      ctx.stdout.write(
        `Certificate expiry set to ${view.certExpiry}. New certificates are valid for ${view.certExpiry}; nodes whose certificates outlive that renew within a minute.\n`,
      );
    }
    if (externalCAs !== undefined) ctx.stdout.write(`External CAs set to ${view.ca.externalUrls.join(', ')} (tried in that order).\n`);
    return 0;
  });
}

/** Registers update. */
export function registerUpdate(program: Command, ctx: CliContext, done: Done): void {
  withConnectFlags(
    program
      .command('update')
      .description('change cluster settings')
      .option('--cert-expiry <duration>', "lifetime of node certificates, e.g. '720h', '90d' (minimum 5m)")
      .option('--external-ca <spec>', 'replace the external CA list (repeatable): protocol=cfssl,url=URL[,cacert=FILE][,authkey=HEX]', collect, [])
      .option('--external-ca-insecure', 'allow an --external-ca url that is plain http:// (requests and certificates then travel in clear)')
      .option('--autolock <true|false>', "encrypt the managers' keys at rest under an unlock key ('muster unlock' after each restart), or stop"),
  ).action(
    act(done)((options: Record<string, unknown>) =>
      updateCommand(ctx, {
        ...connectFlags(options),
        ...(typeof options.certExpiry === 'string' ? { certExpiry: options.certExpiry } : {}),
        ...(typeof options.autolock === 'string' ? { autolock: options.autolock } : {}),
        externalCa: options.externalCa as string[],
        externalCaInsecure: options.externalCaInsecure === true,
      }),
    ),
  );
}
