/**
 * The npm package installs the tested dependency tree: the packed tarball
 * carries npm-shrinkwrap.json (prepack copies package-lock.json), and a
 * global install of it gets exactly the locked production tree, with no
 * EBADENGINE warning on Node 20, and working `muster` and `muster-ca`.
 *
 * npm follows a package's shrinkwrap only when the registry's metadata says
 * `_hasShrinkwrap: true`, which registry.npmjs.org sets for a tarball that
 * holds one (npm/registry, docs/responses/package-metadata.md); a tarball
 * given as a file is installed as if it had none (npm/cli#5325, #5349). So
 * the test publishes the tarball the way the registry does: a local registry
 * answers for this one package and sends every other request on to the real
 * registry, whose packages npm then fetches as the shrinkwrap pins them.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slow } from '../helpers/slowdown.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');

/** npm without the npm_* settings of the `npm test` that may be running us. */
const npmEnv = (): Record<string, string | undefined> =>
  Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')));

/** Every package under a node_modules tree with its version, keyed like a lockfile ('node_modules/a/node_modules/b'). */
function installedTree(packageDir: string, prefix = ''): Map<string, string> {
  const tree = new Map<string, string>();
  const modules = join(packageDir, 'node_modules');
  if (!existsSync(modules)) return tree;
  const names = readdirSync(modules).flatMap((name) =>
    name.startsWith('@') ? readdirSync(join(modules, name)).map((sub) => `${name}/${sub}`) : name.startsWith('.') ? [] : [name],
  );
  for (const name of names) {
    const dir = join(modules, name);
    const key = `${prefix}node_modules/${name}`;
    tree.set(key, (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version);
    for (const [k, v] of installedTree(dir, `${key}/`)) tree.set(k, v);
  }
  return tree;
}

describe('npm package', () => {
  const work = mkdtempSync(join(tmpdir(), 'muster-npm-'));
  let tarball = '';
  let server: Server | undefined;

  beforeAll(async () => {
    // npm pack's lifecycle without `prepare`: the global setup built dist/, and rebuilding it here would race the tests that run it.
    const env = npmEnv();
    await run('npm', ['run', '--silent', 'prepack'], { cwd: ROOT, env });
    try {
      const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, env });
      tarball = join(work, (JSON.parse(stdout) as { filename: string }[])[0]!.filename);
    } finally {
      await run('npm', ['run', '--silent', 'postpack'], { cwd: ROOT, env });
    }
  }, slow(120_000));

  afterAll(async () => {
    await new Promise<void>((done) => (server === undefined ? done() : server.close(() => done())));
    rmSync(work, { recursive: true, force: true });
  });

  it('carries npm-shrinkwrap.json, a copy of package-lock.json, and leaves none in the checkout', () => {
    const shrinkwrap = execFileSync('tar', ['-xzOf', tarball, 'package/npm-shrinkwrap.json'], { encoding: 'utf8' });
    expect(shrinkwrap).toBe(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
    expect(existsSync(join(ROOT, 'npm-shrinkwrap.json'))).toBe(false);
  });

  it('has a scoped name, not the unrelated `muster` of the public registry, and keeps the bins', () => {
    const manifest = JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' })) as {
      name: string;
      bin: Record<string, string>;
    };
    expect(manifest.name).toBe('@muster-cluster/muster');
    expect(manifest.bin).toEqual({ muster: 'dist/cli/main.js', 'muster-ca': 'dist/ca-tool/main.js' });
  });

  it(
    'installs globally, as published, with the locked tree, no EBADENGINE warning, and runs muster --version',
    async () => {
      const bytes = readFileSync(tarball);
      const manifest = JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' })) as { name: string; version: string };
      // As registry.npmjs.org does on publish: the flag says whether the tarball holds a shrinkwrap.
      const hasShrinkwrap = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n').includes('package/npm-shrinkwrap.json');
      const upstream = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', env: npmEnv() }).trim().replace(/\/$/, '');
      server = createServer((req, res) => {
        const url = req.url ?? '/';
        const base = `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
        if (decodeURIComponent(url) === `/${manifest.name}`) {
          const version = {
            ...manifest,
            _id: `${manifest.name}@${manifest.version}`,
            _hasShrinkwrap: hasShrinkwrap,
            dist: {
              tarball: `${base}/package.tgz`,
              shasum: createHash('sha1').update(bytes).digest('hex'),
              integrity: `sha512-${createHash('sha512').update(bytes).digest('base64')}`,
            },
          };
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ name: manifest.name, 'dist-tags': { latest: manifest.version }, versions: { [manifest.version]: version } }));
        } else if (url === '/package.tgz') {
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.end(bytes);
        } else {
          res.writeHead(302, { location: `${upstream}${url}` });
          res.end();
        }
      });
      await new Promise<void>((listening) => server!.listen(0, '127.0.0.1', listening));
      const registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

      const prefix = join(work, 'prefix');
      const { stderr } = await run(
        'npm',
        ['install', '--global', '--prefix', prefix, '--registry', registry, '--no-audit', '--no-fund', `${manifest.name}@${manifest.version}`],
        { cwd: work, env: npmEnv() },
      );
      expect(stderr).not.toMatch(/EBADENGINE/);

      const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string; dev?: boolean }> };
      const locked = new Map(Object.entries(lock.packages).flatMap(([key, entry]) => (key !== '' && entry.dev !== true ? [[key, entry.version ?? '']] : [])));
      const installed = installedTree(join(prefix, 'lib/node_modules', manifest.name));
      expect(Object.fromEntries([...installed].sort())).toEqual(Object.fromEntries([...locked].sort()));

      const { stdout: version } = await run(join(prefix, 'bin/muster'), ['--version']);
      expect(version.trim()).toBe(manifest.version);
      const { stdout: caVersion } = await run(join(prefix, 'bin/muster-ca'), ['--version']);
      expect(caVersion).toContain(manifest.version);
    },
    slow(240_000),
  );
});
