/**
 * What a CLI run is given from outside: streams, environment, identity of
 * the user, time, chance and signals. main.ts fills it from `process`;
 * tests fill it themselves, so commands run in-process.
 */
import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import type { Output } from './output.js';

/** The outside world of one CLI run. */
export interface CliContext extends Output {
  /** The environment; only settings.ts reads it. */
  env: Record<string, string | undefined>;
  /** Standard input, for secrets passed as '-' (join tokens). */
  stdin?: NodeJS.ReadableStream;
  uid: number;
  home: string;
  hostname: string;
  clock: Clock;
  random: Random;
  /** Resolves with the signal name when the process is asked to stop. */
  waitForStop(): Promise<string>;
  /** Registers a handler for "renew now" requests (SIGHUP); returns an unregister function. */
  onRenewRequest?: (handler: () => void) => () => void;
  /** Replaces the process's visible arguments (/proc/PID/cmdline), so a secret given on the command line does not stay there. */
  hideArguments?: (visible: string[]) => void;
  /** Called once a foreground command is up (tests wait on it). */
  onReady?: (info: { address?: string; nodeId: string; role: string }) => void;
}
