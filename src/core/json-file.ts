/** Reading a JSON file that muster wrote, checked against its schema. */
import { readFile } from 'node:fs/promises';
import { MusterError } from './errors.js';

/**
 * Reads `file` as JSON that `holds` accepts (its schema's check; this module
 * loads no schema library, so reading node.json costs a client command
 * nothing); undefined when it does not exist, STATE_CORRUPT (with `why`'s
 * words) when it is not JSON or not that shape.
 */
export async function readJsonFile<T>(file: string, holds: (value: unknown) => value is T, why: (value: unknown) => string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return parseJsonText(file, text, holds, why);
}

/** `text`, read from `file`, as JSON that `holds` accepts (see {@link readJsonFile}). */
export function parseJsonText<T>(file: string, text: string, holds: (value: unknown) => value is T, why: (value: unknown) => string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new MusterError('STATE_CORRUPT', `${file} is not valid JSON`, { cause });
  }
  if (!holds(value)) throw new MusterError('STATE_CORRUPT', `${file} ${why(value)}`);
  return value;
}
