/** Reading a JSON file that muster wrote, checked against its schema. */
import { readFile } from 'node:fs/promises';
import type { Static, TSchema } from 'typebox';
import Value from 'typebox/value';
import { MusterError } from './errors.js';

/**
 * Reads `file` as JSON matching `schema`; undefined when it does not exist,
 * STATE_CORRUPT (with `why`'s words) when it is not JSON or not that shape.
 */
export async function readJsonFile<S extends TSchema>(file: string, schema: S, why: (value: unknown) => string): Promise<Static<S> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return parseJsonText(file, text, schema, why);
}

/** `text`, read from `file`, as JSON matching `schema` (see {@link readJsonFile}). */
export function parseJsonText<S extends TSchema>(file: string, text: string, schema: S, why: (value: unknown) => string): Static<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new MusterError('STATE_CORRUPT', `${file} is not valid JSON`, { cause });
  }
  if (!Value.Check(schema, value)) throw new MusterError('STATE_CORRUPT', `${file} ${why(value)}`);
  return value as Static<S>;
}
