/**
 * Where an unlock key comes from, never the command line (DESIGN §11):
 * --unlock-key-file FILE ('-': standard input), else MUSTER_UNLOCK_KEY, else
 * the systemd credential `muster-unlock-key` ($CREDENTIALS_DIRECTORY, from
 * LoadCredential=), else, for `muster unlock`, standard input: typed at a
 * prompt that does not echo on a terminal, piped otherwise.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ReadStream } from 'node:tty';
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
  const terminal = ctx.stdin as Partial<ReadStream> | undefined;
  if (terminal?.isTTY === true && typeof terminal.setRawMode === 'function')
    return parseUnlockKey(await readHidden(terminal as ReadStream, ctx.stderr, 'Enter the unlock key (SWMKEY-1-…): '));
  return parseUnlockKey(await fromFile(ctx, '-'));
}

/**
 * One line typed on a terminal, not echoed, as `docker swarm unlock` reads
 * the key: Enter submits; Backspace deletes; Ctrl-C, or Ctrl-D on an empty
 * line, gives up. The terminal's own echo is off (raw mode) while it reads.
 */
function readHidden(terminal: ReadStream, prompt: NodeJS.WritableStream, text: string): Promise<string> {
  terminal.setRawMode(true); // echo off before the prompt shows: a key typed as soon as it appears is never echoed
  prompt.write(text);
  terminal.resume();
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (error?: MusterError): void => {
      terminal.off('data', onData);
      terminal.off('end', onEnd);
      if (!terminal.destroyed) terminal.setRawMode(false); // a terminal that went away has no mode to restore
      terminal.pause(); // nothing more is read: the process may end
      prompt.write('\n');
      if (error === undefined) resolve(typed);
      else reject(error);
    };
    const onData = (chunk: Buffer | string): void => {
      for (const char of chunk.toString()) {
        if (char === '\r' || char === '\n') {
          finish();
          return;
        }
        if (char === '\u0003' || (char === '\u0004' && typed === '')) {
          finish(new MusterError('USAGE', 'no unlock key given'));
          return;
        }
        if (char === '\u0004') {
          finish();
          return;
        }
        if (char === '\u007f' || char === '\b') typed = typed.slice(0, -1);
        else typed += char;
      }
    };
    // The terminal went away (a closed window): nothing more will be typed.
    const onEnd = (): void => finish(new MusterError('USAGE', 'no unlock key given'));
    terminal.on('data', onData);
    terminal.on('end', onEnd);
  });
}
