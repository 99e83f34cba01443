/**
 * Named crash points for fault-injection tests (etcd's gofail, in small):
 * `MUSTER_FAILPOINTS=name[,name…]` arms them in a real process, and the
 * process kills itself (SIGKILL, nothing flushed) the moment it reaches one.
 * Unarmed, a failpoint is one Set lookup. The CLI arms them; nothing else
 * reads the environment.
 */

let armed: ReadonlySet<string> = new Set();
let onHit: (name: string) => void = () => {};

/** Arms `names`; `hit` runs when one is reached (the CLI: SIGKILL itself). */
export function armFailpoints(names: readonly string[], hit: (name: string) => void): void {
  armed = new Set(names);
  onHit = hit;
}

/** A crash point: does nothing unless armed. */
export function failpoint(name: string): void {
  if (armed.has(name)) onHit(name);
}
