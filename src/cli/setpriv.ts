/** util-linux's setpriv, which ties a child's life to muster's (its parent-death signal), when the system has it. */
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

let found: string | null | undefined;

/** The setpriv binary on the PATH, or undefined (a child then outlives a SIGKILLed muster until it is stopped). */
export function findSetpriv(): string | undefined {
  if (found === undefined) {
    found = null;
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      if (!isAbsolute(dir)) continue;
      try {
        accessSync(join(dir, 'setpriv'), constants.X_OK);
        found = join(dir, 'setpriv');
        break;
      } catch {
        // not here
      }
    }
  }
  return found ?? undefined;
}
