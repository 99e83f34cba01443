/**
 * The plain schemas client commands check answers and node.json with
 * (core/schema-check.ts, issue 29): the generated files hold TypeBox's
 * schemas as they are now, and the checker answers as TypeBox's Value.Check
 * does on values made from each schema, well formed and broken.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import Value from 'typebox/value';
import { describe, expect, it } from 'vitest';
import { NodeState } from '../../src/agent/node-state-plain.js';
import * as Plain from '../../src/api/plain-schemas.js';
import { checkSchema, type PlainSchema } from '../../src/core/schema-check.js';
import { PLAIN_FILES, plainFileText } from '../helpers/plain-schemas.js';

const PLAIN: Record<string, PlainSchema> = { ...Plain, NodeState };

/** Strings that test the date-time rules at their edges. */
const DATE_TIMES = [
  '2026-12-06T08:00:00.000Z',
  '2026-12-06T08:00:00+01:00',
  '2026-12-06t08:00:00z',
  '2024-02-29T00:00:00Z',
  '2026-02-29T00:00:00Z',
  '2026-13-01T00:00:00Z',
  '2026-12-31T23:59:60Z',
  '2026-12-31T22:59:60-01:00',
  '2026-12-31T12:59:60Z',
  '2026-12-06T24:00:00Z',
  '2026-12-06T08:00:00',
  '2026-12-06 08:00:00Z',
  '2026-12-06T08:00:00+01:00[Europe/Paris]',
  '2026-12-06T08:00:00Z[u-ca=iso8601]',
  '2026-12-06T08:00:00Z[',
];

/**
 * Values near `schema`: with `loose`, mostly of its shape but now and then of
 * another type, a string outside its rules, a required field missing or a
 * field it does not know; without, only well-formed values.
 */
function near(schema: PlainSchema, loose: boolean): fc.Arbitrary<unknown> {
  if (!loose) return shaped(schema, false);
  const other = fc.constantFrom<unknown>(null, 0, 1.5, -1, '', 'x', true, [], {});
  return fc.oneof({ weight: 12, arbitrary: shaped(schema, true) }, { weight: 1, arbitrary: other });
}

function shaped(schema: PlainSchema, loose: boolean): fc.Arbitrary<unknown> {
  const either = (good: fc.Arbitrary<unknown>, bad: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> => (loose ? fc.oneof(good, bad) : good);
  if (schema.anyOf !== undefined) return fc.oneof(...schema.anyOf.map((option) => near(option, loose)));
  if (schema.const !== undefined) return fc.constant(schema.const);
  switch (schema.type) {
    case undefined:
      return fc.jsonValue({ maxDepth: 2 });
    case 'string': {
      const unit = fc.constantFrom('a', 'Z', '0', '.', '-', ':', ' ', 'é', '😀');
      const any = fc.string({ unit, maxLength: (schema.maxLength ?? 8) + 2 });
      if (schema.format === 'date-time')
        return either(
          fc.date({ noInvalidDate: true, min: new Date(0), max: new Date('9999-12-31') }).map((d) => d.toISOString()),
          fc.oneof(fc.constantFrom(...DATE_TIMES), any),
        );
      if (schema.pattern !== undefined) return either(fc.stringMatching(new RegExp(schema.pattern, 'u')), any);
      const min = schema.minLength ?? 0;
      const max = Math.min(schema.maxLength ?? 8, 12);
      return either(
        fc.string({ unit, minLength: min, maxLength: Math.max(min, max) }),
        fc.string({ unit, minLength: Math.max(min - 1, 0), maxLength: (schema.maxLength ?? 8) + 1 }),
      );
    }
    case 'integer':
    case 'number':
      return either(fc.integer({ min: schema.minimum ?? -2, max: 3 }), fc.oneof(fc.integer({ min: -2, max: 3 }), fc.double({ min: -2, max: 3, noNaN: true })));
    case 'boolean':
      return fc.boolean();
    case 'array': {
      const min = schema.minItems ?? 0;
      const max = Math.min(schema.maxItems ?? 3, 3);
      return either(
        fc.array(near(schema.items ?? {}, loose), { minLength: min, maxLength: Math.max(min, max) }),
        fc.array(near(schema.items ?? {}, loose), { minLength: Math.max(min - 1, 0), maxLength: Math.min((schema.maxItems ?? 3) + 1, 4) }),
      );
    }
    case 'object': {
      const properties = schema.properties ?? {};
      const required = schema.required ?? [];
      const patterns = Object.entries(schema.patternProperties ?? {});
      const known = fc.record(Object.fromEntries(Object.entries(properties).map(([name, property]) => [name, near(property, loose)])), {
        requiredKeys: [...required],
      });
      const keys = patterns.map(([pattern]) => fc.stringMatching(new RegExp(pattern, 'u')));
      const extra =
        patterns.length === 0
          ? fc.dictionary(fc.constantFrom('extra', 'zone'), fc.constant('x'), { maxKeys: 1 })
          : fc.dictionary(loose ? fc.oneof(...keys, fc.constantFrom('bad key', '')) : fc.oneof(...keys), near(patterns[0]![1], loose), {
              maxKeys: loose ? (schema.maxProperties ?? 3) + 1 : Math.min(schema.maxProperties ?? 3, 3),
            });
      // Unknown fields only where the schema lets them through, unless loose.
      const more =
        loose || schema.additionalProperties !== false || patterns.length > 0
          ? fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: extra })
          : fc.constant({});
      return fc.tuple(known, more, fc.nat({ max: loose ? required.length * 8 : 0 })).map(([value, added, drop]) => {
        const out: Record<string, unknown> = { ...(added as Record<string, unknown>), ...(value as Record<string, unknown>) };
        if (loose && drop < required.length) delete out[required[drop]!];
        return out;
      });
    }
  }
}

describe('plain schemas', () => {
  it('the generated files hold the TypeBox schemas as they are now (else: npm run schemas:plain)', () => {
    for (const file of PLAIN_FILES) expect(readFileSync(new URL(`../../${file.path}`, import.meta.url), 'utf8'), file.path).toBe(plainFileText(file));
  });

  const schemas = PLAIN_FILES.flatMap((file) => Object.entries(file.schemas));
  it.each(schemas.map(([name, schema]) => ({ name, schema })))(
    'checkSchema answers as Value.Check on values near $name, well formed and broken',
    ({ name, schema }) => {
      const plain = PLAIN[name]!;
      const seen = { accepted: 0, refused: 0 };
      fc.assert(
        fc.property(fc.oneof(near(plain, false), near(plain, true)), (made) => {
          // As a client meets it: parsed JSON.
          const value: unknown = JSON.parse(JSON.stringify(made) ?? 'null');
          const typebox = Value.Check(schema, value);
          seen[typebox ? 'accepted' : 'refused']++;
          expect(checkSchema(plain, value), JSON.stringify(value)).toBe(typebox);
        }),
        { numRuns: 400 },
      );
      // Both answers were exercised, not just one.
      expect(seen.accepted).toBeGreaterThan(10);
      expect(seen.refused).toBeGreaterThan(10);
    },
  );

  it('the date-time edge cases answer as TypeBox does', () => {
    const time: PlainSchema = { type: 'string', format: 'date-time' };
    for (const text of DATE_TIMES) expect(checkSchema(time, text), text).toBe(Value.Check({ type: 'string', format: 'date-time' } as never, text));
  });

  it('throws on a keyword it does not know rather than passing a value unchecked', () => {
    expect(() => checkSchema({ type: 'string', enum: ['a'] } as PlainSchema, 'b')).toThrow(/unsupported keyword enum/);
    expect(() => checkSchema({ type: 'string', format: 'email' } as unknown as PlainSchema, 'b')).toThrow(/unsupported format email/);
  });
});
