/**
 * Cases that build on one another: an end-to-end file that grows one cluster
 * step by step (found, join, promote, kill, recover) would multiply the
 * suite's time if every case founded its own. A story keeps the steps in one
 * cluster and still lets any step run alone (`vitest run FILE -t NAME`): a
 * step first runs, in order, every earlier step of its story that has not run
 * in this process (the ones `-t` filtered out), then itself. In a whole run
 * the earlier steps have already run, so nothing runs twice; once a step
 * fails, the steps after it fail at once naming it instead of running on a
 * half-built cluster.
 */
import { it, type TestContext } from 'vitest';
import { slow } from './slowdown.js';

type StepBody = (context: TestContext) => unknown;

interface Step {
  readonly name: string;
  readonly timeout: number;
  readonly body: StepBody;
  state: 'pending' | 'passed' | 'failed';
}

/** Options a step takes: its own time limit (already scaled with `slow`). */
export interface StepOptions {
  readonly timeout: number;
}

/** A story: `step` registers a case that builds on the story's earlier steps. */
export interface Story {
  step(name: string, body: StepBody): void;
  step(name: string, options: StepOptions, body: StepBody): void;
}

/** The suite's own default limit for a case (vitest.config.ts). */
const DEFAULT_TIMEOUT = slow(30_000);

/** How a step becomes a case: vitest's `it`, or a recorder in the helper's own test. */
export type Register = (name: string, options: { timeout: number }, fn: (context: TestContext) => Promise<void>) => void;

/** Starts a story; call inside the `describe` whose steps build on one another. */
export function story(register: Register = it): Story {
  const steps: Step[] = [];

  async function run(step: Step, context: TestContext): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    // Each step keeps its own limit even when it runs inside a later step's case
    // (whose vitest limit is the sum of all the steps it may have to run).
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`step "${step.name}" timed out after ${step.timeout} ms`)), step.timeout);
    });
    try {
      await Promise.race([Promise.resolve().then(() => step.body(context)), expired]);
      step.state = 'passed';
    } catch (error) {
      step.state = 'failed';
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async function runThrough(index: number, context: TestContext): Promise<void> {
    for (const earlier of steps.slice(0, index)) {
      if (earlier.state === 'passed') continue;
      if (earlier.state === 'failed') throw new Error(`an earlier step of this story failed: "${earlier.name}"`);
      try {
        await run(earlier, context);
      } catch (error) {
        throw new Error(`the earlier step "${earlier.name}", run first because this one builds on it, failed`, { cause: error });
      }
    }
    const step = steps[index];
    if (step === undefined) throw new Error(`no step ${index} in this story`);
    await run(step, context);
  }

  return {
    step(name: string, optionsOrBody: StepOptions | StepBody, maybeBody?: StepBody) {
      const [options, body] = typeof optionsOrBody === 'function' ? [{ timeout: DEFAULT_TIMEOUT }, optionsOrBody] : [optionsOrBody, maybeBody];
      if (body === undefined) throw new Error(`step "${name}" has no body`);
      const index = steps.length;
      steps.push({ name, timeout: options.timeout, body, state: 'pending' });
      const total = steps.reduce((sum, s) => sum + s.timeout, 0);
      register(name, { timeout: total }, (context) => runThrough(index, context));
    },
  };
}
