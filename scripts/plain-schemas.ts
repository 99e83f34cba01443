/**
 * npm run schemas:plain — writes the TypeBox schemas that client commands
 * check answers and node.json with as plain JSON Schema (src/api/plain-schemas.ts,
 * src/agent/node-state-plain.ts), for src/core/schema-check.ts: a client
 * command then never loads TypeBox (issue 29). Run it after changing one of
 * them; test/core/schema-check.test.ts fails while a file is stale.
 */
import { writeFileSync } from 'node:fs';
import { PLAIN_FILES, plainFileText } from '../test/helpers/plain-schemas.js';

for (const file of PLAIN_FILES) {
  writeFileSync(new URL(`../${file.path}`, import.meta.url), plainFileText(file));
  console.log(`${file.path}: ${Object.keys(file.schemas).join(', ')}`);
}
