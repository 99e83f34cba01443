/**
 * The layering of STYLE.md, checked on the import lines of src/: core imports
 * nothing; pki, token, store, api and config import only core; manager and
 * agent never import each other, the node process, the CLI, or a store
 * backend's internals (the agent no store at all, the manager no config);
 * node/ (the process that runs a node) sits between the CLI and them and
 * imports no CLI code; manager/ stands on three floors, http/ over
 * services/ over state/, with manager.ts (the composition) on top and no
 * import upwards or in a loop; one CLI command file
 * never imports another; only the CLI touches `process` (and muster-ca's
 * entry, ca-tool/main.ts, which imports only core and pki).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../src');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** Every src file with the src files it imports (paths relative to src/). */
const graph = filesUnder(SRC).map((file) => {
  const text = readFileSync(file, 'utf8');
  const imports = [...text.matchAll(/^import[^;]*?from '(\.[^']+)';/gms)].map((m) => relative(SRC, resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts'))));
  // Imports that load code when the file loads (an `import type` is gone once compiled).
  const loads = [...text.matchAll(/^import (?!type )[^;]*?from '(\.[^']+)';/gms)].map((m) =>
    relative(SRC, resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts'))),
  );
  return { file: relative(SRC, file), imports, loads, text };
});

const layer = (path: string): string => path.split('/')[0]!;

describe('layering (STYLE.md)', () => {
  it('core imports nothing else from src/; pki, token, store, api and config import only core (and themselves)', () => {
    const wrong = graph.flatMap(({ file, imports }) => {
      const own = layer(file);
      const allowed = own === 'core' ? ['core'] : ['pki', 'token', 'store', 'api', 'config'].includes(own) ? ['core', own] : undefined;
      return allowed === undefined ? [] : imports.filter((i) => !allowed.includes(layer(i))).map((i) => `${file} -> ${i}`);
    });
    expect(wrong).toEqual([]);
  });

  it('muster-ca (ca-tool) imports only core and pki: it runs offline, with no manager, agent, store or CLI', () => {
    const wrong = graph
      .filter(({ file }) => layer(file) === 'ca-tool')
      .flatMap(({ file, imports }) => imports.filter((i) => !['core', 'pki', 'ca-tool'].includes(layer(i))).map((i) => `${file} -> ${i}`));
    expect(wrong).toEqual([]);
  });

  it('node/ runs a node (agent, manager, local lock, store opening, node files) and imports no CLI code', () => {
    const wrong = graph
      .filter(({ file }) => layer(file) === 'node')
      .flatMap(({ file, imports }) => imports.filter((i) => layer(i) === 'cli').map((i) => `${file} -> ${i}`));
    expect(wrong).toEqual([]);
  });

  it('manager and agent never import each other, node/, the CLI, config (manager) or a store backend (both)', () => {
    const wrong = graph.flatMap(({ file, imports }) => {
      const own = layer(file);
      if (own !== 'manager' && own !== 'agent') return [];
      const banned = (i: string): boolean =>
        ['cli', 'node', own === 'manager' ? 'agent' : 'manager'].includes(layer(i)) ||
        i === 'store/level-store.ts' ||
        i === 'store/etcd-store.ts' ||
        (own === 'manager' && layer(i) === 'config') ||
        (own === 'agent' && (layer(i) === 'store' || (layer(i) === 'config' && i !== 'config/paths.ts')));
      return imports.filter(banned).map((i) => `${file} -> ${i}`);
    });
    expect(wrong).toEqual([]);
  });

  /** The manager's floors, lowest first: a file imports only its own floor or lower ones. */
  const FLOORS = ['manager/state/', 'manager/services/', 'manager/http/', 'manager/manager.ts'];
  const floorOf = (path: string): number => FLOORS.findIndex((prefix) => path.startsWith(prefix));

  it('every manager file stands on a floor: state/, services/, http/, or manager.ts on top', () => {
    const loose = graph.filter(({ file }) => layer(file) === 'manager' && floorOf(file) < 0).map((g) => g.file);
    expect(loose).toEqual([]);
  });

  it('manager floors import only downwards: http/ over services/ over state/', () => {
    const upwards = graph
      .filter(({ file }) => layer(file) === 'manager')
      .flatMap(({ file, imports }) => imports.filter((i) => layer(i) === 'manager' && floorOf(i) > floorOf(file)).map((i) => `${file} -> ${i}`));
    expect(upwards).toEqual([]);
  });

  it('no import loops among src/ files (imports that load code; a type-only import is gone once compiled)', () => {
    const edges = new Map(graph.map(({ file, loads }) => [file, loads]));
    const loops: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (file: string, path: string[]): void => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        loops.push([...path.slice(path.indexOf(file)), file].join(' -> '));
        return;
      }
      state.set(file, 'open');
      for (const next of edges.get(file) ?? []) visit(next, [...path, file]);
      state.set(file, 'done');
    };
    for (const { file } of graph) visit(file, []);
    expect(loops).toEqual([]);
  });

  it('no CLI command file imports another', () => {
    const wrong = graph
      .filter(({ file }) => file.startsWith('cli/commands/'))
      .flatMap(({ file, imports }) => imports.filter((i) => i.startsWith('cli/commands/')).map((i) => `${file} -> ${i}`));
    expect(wrong).toEqual([]);
  });

  it('only the CLI touches process (argv, env, exit, signals) and only settings.ts reads the environment', () => {
    // ca-tool/main.ts is muster-ca's own composition root, as cli/ is muster's.
    const touching = graph
      .filter(({ file, text }) => layer(file) !== 'cli' && file !== 'ca-tool/main.ts' && /process\.(env|argv|exit|on|off|once|title|umask)\b/.test(text))
      .map((g) => g.file);
    expect(touching).toEqual([]);
    const readingEnv = graph
      .filter(({ file, text }) => file !== 'cli/settings.ts' && /\b(ctx\.env|\.env\.MUSTER|process\.env)\b/.test(text) && file !== 'cli/process-context.ts')
      .map((g) => g.file);
    expect(readingEnv).toEqual([]);
  });
});
