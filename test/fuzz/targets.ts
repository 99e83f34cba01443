/**
 * Hostile-input properties, shared by the test suite (a few hundred runs
 * each) and `npm run fuzz` (10,000 each): whatever arrives, the answer is a
 * typed 4xx error or a success — never a crash, a 500 or a stack trace, and a
 * tampered CSR is never accepted.
 */
import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { pino } from 'pino';
import { MusterError } from '../../src/core/errors.js';
import { parseDuration } from '../../src/core/duration.js';
import { buildApp } from '../../src/manager/http/app.js';
import { parseCsr } from '../../src/pki/csr.js';
import { readPemBlocks, toPem } from '../../src/pki/der.js';
import { parseJoinToken } from '../../src/token/join-token.js';
import { foundTestCluster, freshCsr } from '../helpers/service.js';

/** One fuzz target. */
export interface FuzzTarget {
  name: string;
  run(numRuns: number, seed?: number): Promise<void>;
}

/** True for an expected, typed refusal. */
function isTypedRefusal(error: unknown): boolean {
  return error instanceof MusterError && error.statusCode >= 400 && error.statusCode < 500;
}

/** Builds the targets; call cleanup() when done. */
export async function makeTargets(): Promise<{ targets: FuzzTarget[]; cleanup: () => Promise<void> }> {
  const cluster = await foundTestCluster();
  const app = await buildApp({ services: cluster.services, tls: cluster.managerTls, logger: pino({ level: 'silent' }) });
  await app.ready();
  const validCsr = freshCsr().csr;
  const validDer = readPemBlocks(validCsr)[0]!.der;
  const token = cluster.settings.joinTokens().worker;
  const worker = await cluster.caServer.join({ token, csr: freshCsr().csr }, 'fuzz-setup');
  const caller = await cluster.authoriser.authorize(new X509Certificate(worker.certificate), ['worker']);

  /** A JSON body for POST /v1/join: valid, arbitrary, or a valid one with fields swapped for junk. */
  const joinBody = fc.oneof(
    fc.anything().map((v) => JSON.stringify(v) ?? 'null'),
    fc
      .record({ token: fc.oneof(fc.string(), fc.constant(token)), csr: fc.oneof(fc.string(), fc.constant(validCsr)) }, { requiredKeys: [] })
      .map((v) => JSON.stringify(v)),
    fc.tuple(fc.nat({ max: 400 }), fc.string({ maxLength: 4 })).map(([at, junk]) => {
      const body = JSON.stringify({ token, csr: validCsr });
      return body.slice(0, at) + junk + body.slice(at + junk.length);
    }),
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
  );

  const targets: FuzzTarget[] = [
    {
      name: 'POST /v1/join bodies',
      async run(numRuns, seed) {
        let source = 0;
        await fc.assert(
          fc.asyncProperty(
            joinBody,
            fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded'),
            async (payload, type) => {
              // A fresh source address per case keeps the failure limiter out of the way; it has its own tests.
              const res = await app.inject({
                method: 'POST',
                url: '/v1/join',
                payload,
                headers: { 'content-type': type },
                remoteAddress: `10.9.${(source >> 8) & 255}.${source++ & 255}`,
              });
              const ok = res.statusCode === 200 || (res.statusCode >= 400 && res.statusCode < 500);
              if (!ok) throw new Error(`status ${res.statusCode}: ${res.body}`);
              if (res.statusCode !== 200) {
                const body = JSON.parse(res.body) as { code?: unknown; statusCode?: unknown };
                if (typeof body.code !== 'string' || body.statusCode !== res.statusCode) throw new Error(`untyped error body ${res.body}`);
              }
              if (/PRIVATE KEY|\n\s+at /.test(res.body)) throw new Error('key material or a stack trace in a response');
            },
          ),
          { numRuns, ...(seed === undefined ? {} : { seed }) },
        );
      },
    },
    {
      name: 'renew CSRs (service, authenticated caller)',
      async run(numRuns, seed) {
        await fc.assert(
          fc.asyncProperty(
            fc.oneof(
              fc.string(),
              fc.string({ unit: 'binary' }),
              fc.uint8Array({ maxLength: 600 }).map((b) => toPem(b, 'CERTIFICATE REQUEST')),
            ),
            async (csr) => {
              try {
                await cluster.caServer.renew(caller, { csr });
                throw new Error('a junk CSR was accepted');
              } catch (error) {
                if (!isTypedRefusal(error)) throw error;
              }
            },
          ),
          { numRuns, ...(seed === undefined ? {} : { seed }) },
        );
      },
    },
    {
      name: 'CSR parser: random bytes and bit-flipped valid CSRs',
      async run(numRuns, seed) {
        const flipped = fc.tuple(fc.nat({ max: validDer.length * 8 - 1 }), fc.nat({ max: 2 })).map(([bit, extra]) => {
          const copy = Buffer.from(validDer);
          for (let k = 0; k <= extra; k++) {
            const b = (bit + k * 131) % (copy.length * 8);
            copy[b >> 3]! ^= 1 << (b & 7);
          }
          return toPem(copy, 'CERTIFICATE REQUEST');
        });
        const random = fc.uint8Array({ maxLength: 700 }).map((b) => toPem(b, 'CERTIFICATE REQUEST'));
        fc.assert(
          fc.property(fc.oneof(flipped, random, fc.string()), (pem) => {
            try {
              parseCsr(pem);
            } catch (error) {
              if (isTypedRefusal(error)) return;
              throw error;
            }
            throw new Error('a tampered or random CSR was accepted');
          }),
          { numRuns, ...(seed === undefined ? {} : { seed }) },
        );
      },
    },
    {
      name: 'join token parser',
      async run(numRuns, seed) {
        const near = fc
          .tuple(fc.nat({ max: token.length }), fc.string({ maxLength: 3 }), fc.nat({ max: 3 }))
          .map(([at, s, drop]) => token.slice(0, at) + s + token.slice(at + drop));
        fc.assert(
          fc.property(fc.oneof(fc.string(), near, fc.anything()), (input) => {
            try {
              parseJoinToken(input);
            } catch (error) {
              if (!(error instanceof MusterError && error.code === 'TOKEN_INVALID')) throw error;
            }
          }),
          { numRuns, ...(seed === undefined ? {} : { seed }) },
        );
      },
    },
    {
      name: 'duration parser',
      async run(numRuns, seed) {
        fc.assert(
          fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[0-9.]{0,8}(ms|s|m|h|d)?[0-9]{0,4}[smhd]?$/), fc.anything()), (input) => {
            try {
              const ms = parseDuration(input);
              if (!Number.isFinite(ms) || ms < 0) throw new Error(`parsed to ${ms}`);
            } catch (error) {
              if (!(error instanceof MusterError && error.code === 'DURATION_INVALID')) throw error;
            }
          }),
          { numRuns, ...(seed === undefined ? {} : { seed }) },
        );
      },
    },
  ];
  return {
    targets,
    cleanup: async () => {
      await app.close();
      await cluster.cleanup();
    },
  };
}
