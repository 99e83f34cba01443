/**
 * The request logger (issue 31): a request that writes no line makes no
 * child logger; one that does writes through a child bound to its request ID.
 */
import { Writable } from 'node:stream';
import Fastify, { LogController } from 'fastify';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { LazyRequestLogger, lazyChildLogger } from '../../../src/manager/http/request-logger.js';

function recording(level: string): { logger: pino.Logger; lines: Record<string, unknown>[]; children: () => number } {
  const lines: Record<string, unknown>[] = [];
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level }, out);
  let made = 0;
  const child = logger.child.bind(logger);
  logger.child = ((...args: Parameters<typeof child>) => {
    made += 1;
    return child(...args);
  }) as typeof logger.child;
  return { logger, lines, children: () => made };
}

const apps: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});

describe('the request logger', () => {
  it('makes no child for requests that write nothing, and one bound to the request ID for a line written', async () => {
    const { logger, lines, children } = recording('warn');
    const app = Fastify({ loggerInstance: logger, logController: new LogController({ disableRequestLogging: true }), childLoggerFactory: lazyChildLogger });
    apps.push(app);
    app.get('/quiet', async (request) => {
      request.log.debug('not written at warn');
      return { ok: true };
    });
    app.get('/loud', async (request) => {
      request.log.warn({ what: 'something' }, 'written');
      request.log.warn('twice');
      return { ok: true };
    });
    await app.ready();
    const before = children(); // fastify's own, at start
    for (let i = 0; i < 20; i++) expect((await app.inject({ url: '/quiet' })).statusCode).toBe(200);
    expect(children() - before).toBe(0);
    expect(lines).toEqual([]);

    const answer = await app.inject({ url: '/loud' });
    expect(answer.statusCode).toBe(200);
    expect(children() - before).toBe(1);
    expect(lines.map((line) => line.msg)).toEqual(['written', 'twice']);
    expect(lines[0]).toMatchObject({ what: 'something', level: 40 });
    expect(typeof lines[0]!.reqId).toBe('string');
    expect(lines[1]!.reqId).toBe(lines[0]!.reqId);
  });

  it("follows the parent's level, and a level set on it applies to its child", () => {
    const { logger, lines, children } = recording('info');
    const lazy = new LazyRequestLogger(logger, { reqId: 'r1' }, {});
    expect(lazy.level).toBe('info');
    lazy.debug('dropped');
    expect(children()).toBe(0);
    lazy.level = 'debug';
    lazy.debug('kept');
    expect(lines).toMatchObject([{ msg: 'kept', reqId: 'r1' }]);
    expect(children()).toBe(1);
    expect(logger.level).toBe('info');
  });
});
