/** Every command's --help text, snapshot-tested: a change to the CLI's surface shows up in review. */
import { describe, expect, it } from 'vitest';
import { runInProcess } from '../helpers/cli.js';

const COMMANDS = [
  [],
  ['init'],
  ['up'],
  ['join'],
  ['run'],
  ['status'],
  ['join-token'],
  ['update'],
  ['node'],
  ['node', 'ls'],
  ['node', 'inspect'],
  ['node', 'rm'],
  ['node', 'promote'],
  ['node', 'demote'],
  ['ca'],
  ['ca', 'certs'],
  ['ca', 'create-api-certificate'],
  ['ca', 'revoke-api-certificate'],
  ['store'],
  ['store', 'migrate'],
  ['store', 'backup'],
  ['store', 'restore'],
  ['leave'],
  ['completion'],
];

describe('--help', () => {
  it.each(COMMANDS.map((c) => [c.join(' ') || '(none)', c]))('muster %s --help', async (_name, command) => {
    const run = runInProcess([...(command as string[]), '--help']);
    expect(await run.exit).toBe(0);
    expect(run.stdout()).toMatchSnapshot();
  });
});
