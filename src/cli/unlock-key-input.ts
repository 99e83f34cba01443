/**
 * Where an unlock key comes from, never the command line (DESIGN §11):
 * --unlock-key-file FILE ('-': standard input), else MUSTER_UNLOCK_KEY, else
 * the systemd credential `muster-unlock-key` ($CREDENTIALS_DIRECTORY, from
 * LoadCredential=), else, for `muster unlock`, standard input.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathExists } from '../core/atomic-file.js';
import { MusterError } from '../core/errors.js';
import { parseUnlockKey } from '../token/unlock-key.js';
import type { CliContext } from './context.js';
import { readEnv } from './settings.js';
import { readAll } from './stdin.js';

/** The name of the systemd credential muster reads the unlock key from. */
export const UNLOCK_KEY_CREDENTIAL = 'muster-unlock-key';


async function fromFile(ctx: CliContext, file: string): Promise<string> {
  if (file === '-') {
    if (ctx.stdin === undefined) throw new MusterError('USAGE', 'no standard input to read the unlock key from');
    return readAll(ctx.stdin);
  }
  try {
    return await readFile(file, 'utf8');
  } catch {
    throw new MusterError('USAGE', `cannot read the unlock key file ${file}`);
  }
}

/** The unlock key from the file flag, the environment or a systemd credential; undefined when none is given (or standard input when `stdinFallback`). */
export async function readUnlockKey(ctx: CliContext, file: string | undefined, options: { stdinFallback?: boolean } = {}): Promise<Buffer | undefined> {
  if (file !== undefined) return parseUnlockKey(await fromFile(ctx, file));
  const env = readEnv(ctx);
  if (env.unlockKey !== undefined) return parseUnlockKey(env.unlockKey);
  if (env.credentialsDirectory !== undefined) {
    const credential = join(env.credentialsDirectory, UNLOCK_KEY_CREDENTIAL);
    if (await pathExists(credential)) return parseUnlockKey(await fromFile(ctx, credential));
  }
  if (options.stdinFallback !== true) return undefined;
  if ((ctx.stdin as { isTTY?: boolean } | undefined)?.isTTY === true) ctx.stderr.write('Enter the unlock key (SWMKEY-1-…) and press Ctrl-D: ');
  return parseUnlockKey(await fromFile(ctx, '-'));
}
