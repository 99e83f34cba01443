/**
 * npm run readme:errors — rewrites the README's error table from the error
 * catalogue (test/core/errors.test.ts checks that every code is there).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { ERROR_CATALOGUE } from '../src/core/errors.js';

const file = new URL('../README.md', import.meta.url);
const readme = readFileSync(file, 'utf8');
const header = '| code | HTTP | exit | meaning |\n|---|---|---|---|\n';
const rows = Object.entries(ERROR_CATALOGUE)
  .map(
    ([code, spec]) =>
      `| \`${code}\` | ${spec.status} | ${spec.exit} | ${spec.message}${'hint' in spec && spec.hint !== undefined ? ` — hint: ${spec.hint}` : ''} |`,
  )
  .join('\n');
const start = readme.indexOf(header);
if (start === -1) throw new Error('README has no error table');
let end = start + header.length;
while (readme.startsWith('| `', end)) end = readme.indexOf('\n', end) + 1;
writeFileSync(file, `${readme.slice(0, start)}${header}${rows}\n${readme.slice(end)}`);
console.log(`README error table: ${Object.keys(ERROR_CATALOGUE).length} codes`);
