/** The process logger: level names, text or JSON, and journald's priority prefix on every line under JOURNAL_STREAM. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { REDACT_PATHS, createLogger } from '../../src/cli/logger.js';
import { runMuster } from '../helpers/cli.js';
import { runInTerminal } from '../helpers/terminal.js';
import { scratchDir } from '../helpers/openssl.js';
import { afterAll } from 'vitest';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-logger-');
afterAll(() => scratch.cleanup());

/** The lines a logger wrote, once its stream has passed them on. */
function capture(): { out: PassThrough; lines: () => Promise<string[]> } {
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  return {
    out,
    lines: async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return text.split('\n').filter((l) => l !== '');
    },
  };
}

describe('createLogger', () => {
  it('writes JSON with level names, never numbers', async () => {
    const c = capture();
    const logger = createLogger({ out: c.out, format: 'json' });
    logger.warn({ nodeId: 'n1' }, 'a warning');
    const [line] = await c.lines();
    expect(JSON.parse(line!)).toMatchObject({ level: 'warn', nodeId: 'n1', msg: 'a warning' });
  });

  it('writes text lines: time, LEVEL, message, fields', async () => {
    const c = capture();
    const logger = createLogger({ out: c.out, format: 'text' });
    logger.info({ nodeId: 'n1' }, 'joined');
    expect(await c.lines()).toEqual([expect.stringMatching(/^\d{4}-\d\d-\d\dT\S+Z INFO joined {2}nodeId=n1$/)]);
  });

  it('under journald, starts each line with its syslog priority, text by default', async () => {
    const c = capture();
    const logger = createLogger({ out: c.out, level: 'debug', journald: true });
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    logger.fatal('f');
    const lines = await c.lines();
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['<7>', '<6>', '<4>', '<3>', '<2>']);
    expect(lines[2]).toMatch(/^<4>\S+ WARN w$/);
    const j = capture();
    createLogger({ out: j.out, journald: true, format: 'json' }).warn('w');
    expect((await j.lines())[0]).toMatch(/^<4>\{"level":"warn",/);
  });

  it('a muster process under journald writes its error at priority 3; --log-format json is JSON; a bad MUSTER_LOG_FORMAT is a usage error', {
    timeout: slow(60_000),
  }, async () => {
    const empty = scratch.path('empty');
    const journal = await runMuster(['run', '--data-dir', empty], { env: { JOURNAL_STREAM: '8:12345' } });
    expect(journal.code).toBe(3);
    expect(journal.stderr).toMatch(/^<3>\S+ ERROR cannot start: .* holds no node/m);
    const json = await runMuster(['run', '--data-dir', empty, '--log-format', 'json']);
    expect(json.stderr).toMatch(/^\{"level":"error",.*"msg":"cannot start: /m);
    const bad = await runMuster(['run', '--data-dir', empty], { env: { MUSTER_LOG_FORMAT: 'xml' } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('MUSTER_LOG_FORMAT=xml is not a log format');
  });
});

describe('redaction, the second guard (README: log fields are redacted by name)', () => {
  const SECRET = 'SWMTKN-1-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcd-0123456789abcdefghijklmno';
  /** Every redacted field name, at the top level and one object down (the paths REDACT_PATHS lists). */
  const names = [...new Set(REDACT_PATHS.filter((path) => !path.includes('.')))];

  it('lists each secret field name at the top level and two levels down', () => {
    expect(names).toEqual(expect.arrayContaining(['token', 'tokens', 'csr', 'key', 'keyPem', 'privateKey', 'unlockKey', 'dataKey']));
    for (const name of names) expect(REDACT_PATHS).toEqual(expect.arrayContaining([`*.${name}`, `*.*.${name}`]));
  });

  it.each(['json', 'text'] as const)('never writes a secret field in %s, at the top level or inside an object, and keeps the other fields', async (format) => {
    for (const journald of [false, true]) {
      const c = capture();
      const logger = createLogger({ out: c.out, format, journald, level: 'debug' });
      for (const name of names) {
        logger.info({ [name]: SECRET, nodeId: 'n1' }, `top ${name}`);
        logger.debug({ request: { [name]: SECRET, role: 'worker' } }, `nested ${name}`);
        logger.warn({ err: { message: 'refused', [name]: SECRET } }, `in an error ${name}`);
        logger.info({ join: { request: { [name]: SECRET, hostname: 'h2' } } }, `two down ${name}`);
      }
      logger.info({ req: { headers: { authorization: `Bearer ${SECRET}`, host: 'm1' } } }, 'a request');
      const lines = await c.lines();
      expect(lines).toHaveLength(names.length * 4 + 1);
      for (const line of lines) {
        expect(line, `${format}${journald ? ' (journald)' : ''}`).not.toContain(SECRET);
        expect(line).not.toContain('0123456789abcdefghijklmnopqrstuvwxyz');
      }
      const joined = lines.join('\n');
      // What is redacted says so, and what is not secret is still there.
      expect(joined.match(/\[redacted\]/g)?.length).toBeGreaterThanOrEqual(names.length * 3 + 1); // text shows an error by its message
      expect(joined).toContain('h2');
      expect(joined).toContain('n1');
      expect(joined).toContain('worker');
      expect(joined).toContain('m1');
    }
  });
});

describe('on a terminal', () => {
  it("shows muster's lines only (no fastify line), as text, and the init banner apart from them", { timeout: slow(60_000) }, async () => {
    const run = runInTerminal(['init', '--data-dir', scratch.path('tty'), '--listen-addr', '127.0.0.1:0']);
    try {
      await run.waitFor(/To add a worker to this cluster/);
      await run.waitFor(/INFO certificate valid until/);
      const screen = run.screen();
      expect(screen).toMatch(/\S+Z INFO manager listening on 127\.0\.0\.1:\d+/);
      expect(screen).not.toMatch(/Server listening at|"level"/);
      expect(screen).toMatch(/\r?\n\r?\nCluster initialized: current node/);
    } finally {
      run.kill();
      await run.exit;
    }
  });
});
