import { lstatSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensurePrivateDir, writeFileAtomic, writeNewFileSynced } from '../../src/core/atomic-file.js';
import { scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir('muster-atomic-');
afterAll(() => scratch.cleanup());

describe('atomic files', () => {
  it('replaces a file with the mode asked for whatever the umask, leaving no temporary file', async () => {
    const dir = scratch.path('a');
    mkdirSync(dir);
    const file = join(dir, 'f');
    writeFileSync(file, 'old');
    const previous = process.umask(0o000);
    try {
      await writeFileAtomic(file, 'new', 0o600);
    } finally {
      process.umask(previous);
    }
    expect(readFileSync(file, 'utf8')).toBe('new');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['f']);
  });

  it('never writes through a symlink planted where a new file goes', async () => {
    const dir = scratch.path('b');
    mkdirSync(dir);
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(dir, 'planted'));
    await expect(writeNewFileSynced(join(dir, 'planted'), 'x', 0o600)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('makes private folders 0700 whatever the umask, and refuses a symlink in their place', async () => {
    const dir = scratch.path('c/d');
    const previous = process.umask(0o000);
    try {
      await ensurePrivateDir(dir);
    } finally {
      process.umask(previous);
    }
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const link = scratch.path('link');
    symlinkSync(dir, link);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    await expect(ensurePrivateDir(link)).rejects.toMatchObject({ code: 'ENOTDIR' });
  });
});
