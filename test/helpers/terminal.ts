/**
 * The real CLI on a real pseudo-terminal: util-linux `script` gives the
 * command a pty for stdin, stdout and stderr, copies what we write to it as
 * typed keys, and everything the terminal shows (prompts, echoed keys,
 * output) to its own stdout.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CLI } from './cli.js';
import { slow } from './slowdown.js';

/** A muster command on a terminal. */
export interface TerminalRun {
  /** Types `keys` (a carriage return is Enter). */
  type(keys: string): void;
  /** Everything the terminal showed so far. */
  screen(): string;
  /** Resolves when the screen matches `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** The command's exit code. */
  exit: Promise<number | null>;
  /** Ends the terminal (SIGKILL) if it still runs. */
  kill(): void;
}

/** The child processes of `pid`. */
function readChildren(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const quote = (arg: string): string => `'${arg.replaceAll("'", "'\\''")}'`;

/** Runs `muster ARGV` on a pseudo-terminal. */
export function runInTerminal(argv: string[], env: Record<string, string> = {}): TerminalRun {
  const command = [process.execPath, CLI, ...argv].map(quote).join(' ');
  // -q: no banner; -f: flush at once; -e: exit with the command's code; the transcript goes nowhere.
  const child = spawn('script', ['-qfec', command, '/dev/null'], { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  let shown = '';
  const watchers = new Set<() => void>();
  child.stdout.on('data', (chunk: Buffer) => {
    shown += chunk.toString('utf8');
    for (const watcher of watchers) watcher();
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    type: (keys) => void child.stdin.write(keys),
    screen: () => shown,
    exit,
    kill: () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // The command first (script's child, in a session of its own), then script.
      for (const pid of readChildren(child.pid!)) process.kill(pid, 'SIGKILL');
      child.kill('SIGKILL');
    },
    waitFor(pattern, timeoutMs = slow(20_000)) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const match = shown.match(pattern);
          if (match === null) return;
          watchers.delete(check);
          clearTimeout(timer);
          resolve(match);
        };
        const timer = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`timed out waiting for ${pattern} on the terminal:\n${shown}`));
        }, timeoutMs);
        watchers.add(check);
        check();
      });
    },
  };
}
