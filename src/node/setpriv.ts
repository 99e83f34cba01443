/** util-linux's setpriv, which ties a child's life to muster's (its parent-death signal), when the system has it. */
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** The setpriv binary on `searchPath`, or undefined (a child then outlives a SIGKILLed muster until it is stopped). */
export function findSetpriv(searchPath: string): string | undefined {
  for (const dir of searchPath.split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    try {
      accessSync(join(dir, 'setpriv'), constants.X_OK);
      return join(dir, 'setpriv');
    } catch {
      // not here
    }
  }
  return undefined;
}
