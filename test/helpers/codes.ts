/** The code of the MusterError a promise rejects with, or undefined when it resolves. */
import { MusterError } from '../../src/core/errors.js';

export async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (error instanceof MusterError) return error.code;
    throw error;
  }
}

/** The code of the MusterError `fn` throws, 'not a MusterError' for another throw, or undefined when it returns. */
export function codeOfSync(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return error instanceof MusterError ? error.code : 'not a MusterError';
  }
}
