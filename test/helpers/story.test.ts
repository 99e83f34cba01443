import { describe, expect, it, type TestContext } from 'vitest';
import { type Register, story } from './story.js';

const context = {} as TestContext;

/** A story whose cases are recorded instead of registered, so the test can run any of them as `-t` would. */
function recorded() {
  const cases: { name: string; timeout: number; fn: (context: TestContext) => Promise<void> }[] = [];
  const register: Register = (name, options, fn) => cases.push({ name, timeout: options.timeout, fn });
  const ran: string[] = [];
  const s = story(register);
  const run = (index: number) => {
    const recordedCase = cases[index];
    if (recordedCase === undefined) throw new Error(`no case ${index}`);
    return recordedCase.fn(context);
  };
  return { cases, ran, s, run };
}

describe('story: steps that build on one another', () => {
  it('a later step run alone runs the earlier ones first, in order, then itself; nothing runs twice after', async () => {
    const { cases, ran, s, run } = recorded();
    for (const name of ['found', 'join', 'promote']) s.step(name, { timeout: 1_000 }, () => void ran.push(name));
    await run(2);
    expect(ran).toEqual(['found', 'join', 'promote']);
    await run(1);
    expect(ran).toEqual(['found', 'join', 'promote', 'join']);
    // A case's vitest limit covers every step it may run; each step keeps its own inside.
    expect(cases.map((c) => c.timeout)).toEqual([1_000, 2_000, 3_000]);
  });

  it('in a whole run each step runs once; after a failed step the later ones fail at once, naming it', async () => {
    const { ran, s, run } = recorded();
    s.step('found', { timeout: 1_000 }, () => void ran.push('found'));
    s.step('join', { timeout: 1_000 }, () => {
      ran.push('join');
      throw new Error('no manager');
    });
    s.step('promote', { timeout: 1_000 }, () => void ran.push('promote'));
    await run(0);
    await expect(run(1)).rejects.toThrow('no manager');
    await expect(run(2)).rejects.toThrow('an earlier step of this story failed: "join"');
    expect(ran).toEqual(['found', 'join']);
  });

  it('an earlier step that fails when run first is named as the cause; a step past its own limit fails with it', async () => {
    const { s, run } = recorded();
    s.step('found', { timeout: 1_000 }, () => {
      throw new Error('port taken');
    });
    s.step('join', { timeout: 1_000 }, () => undefined);
    const failure = await run(1).catch((error: Error) => error);
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toContain('the earlier step "found"');
    expect(((failure as Error).cause as Error).message).toBe('port taken');

    const hung = recorded();
    hung.s.step('hangs', { timeout: 50 }, () => new Promise(() => undefined));
    await expect(hung.run(0)).rejects.toThrow('step "hangs" timed out after 50 ms');
  });
});
