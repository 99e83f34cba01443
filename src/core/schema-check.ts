/**
 * A JSON Schema checker for the few keywords muster's response and node.json
 * schemas use, so a client command checks what it reads without loading
 * TypeBox: its ~680 modules were most of `muster node ls`'s start-up
 * (issue 29). The schemas it checks are TypeBox's own, written out as plain
 * JSON by `npm run schemas:plain`; test/core/schema-check.test.ts holds its
 * answers to TypeBox's Value.Check on them. A keyword it does not know
 * throws: a schema it cannot check in full is a bug, never a pass.
 */

/** A JSON Schema made only of the keywords {@link checkSchema} knows. */
export interface PlainSchema {
  readonly type?: 'object' | 'array' | 'string' | 'number' | 'integer' | 'boolean';
  readonly anyOf?: readonly PlainSchema[];
  readonly const?: string | number | boolean;
  readonly required?: readonly string[];
  readonly properties?: { readonly [name: string]: PlainSchema };
  readonly patternProperties?: { readonly [pattern: string]: PlainSchema };
  readonly additionalProperties?: boolean;
  readonly maxProperties?: number;
  readonly items?: PlainSchema;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly format?: 'date-time';
  readonly minimum?: number;
}

/** A plain schema of values of type T (T only tells the compiler what a checked value is). */
export type Checked<T> = PlainSchema & { readonly '~static'?: T };

const KEYWORDS = new Set([
  'type',
  'anyOf',
  'const',
  'required',
  'properties',
  'patternProperties',
  'additionalProperties',
  'maxProperties',
  'items',
  'minItems',
  'maxItems',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minimum',
]);

const regexps = new Map<string, RegExp>();

/** A pattern as TypeBox compiles it (Unicode, unanchored). */
function regexp(pattern: string): RegExp {
  let compiled = regexps.get(pattern);
  if (compiled === undefined) {
    compiled = new RegExp(pattern, 'u');
    regexps.set(pattern, compiled);
  }
  return compiled;
}

/** String length as JSON Schema counts it: in code points. */
function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

const DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const DATE = /^(\d\d\d\d)-(\d\d)-(\d\d)$/;
const TIME = /^(\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:([Zz])|([+-])(\d\d):(\d\d))?$/;
const DATE_TIME_SUFFIX =
  /^(?:\[!?(?:(?!\.{1,2}[/\]])[A-Za-z._][A-Za-z._0-9+-]{0,13}(?:\/(?!\.{1,2}[/\]])[A-Za-z._][A-Za-z._0-9+-]{0,13})*|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\](?:\[!?[a-z_][a-z_0-9-]*=[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\])*|(?:\[!?[a-z_][a-z_0-9-]*=[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\])*)$/;

function isDate(text: string): boolean {
  const match = DATE.exec(text);
  if (match === null) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month >= 1 && month <= 12 && day >= 1 && day <= (month === 2 && leap ? 29 : DAYS[month]!);
}

function isTime(text: string): boolean {
  const match = TIME.exec(text);
  if (match === null || (match[4] === undefined && match[5] === undefined)) return false;
  const [hour, minute, second] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (hour > 23 || minute > 59 || second > 60) return false;
  const [zoneHour, zoneMinute] = [Number(match[6] ?? 0), Number(match[7] ?? 0)];
  if (zoneHour > 23 || zoneMinute > 59) return false;
  if (second < 60) return true;
  // A leap second is 23:59:60 in UTC only.
  const utcMinute = hour * 60 + minute - (match[5] === '-' ? -1 : 1) * (zoneHour * 60 + zoneMinute);
  return ((utcMinute % 1440) + 1440) % 1440 === 1439;
}

/** RFC 3339 date-time with an optional RFC 9557 suffix: TypeBox's 'date-time' format, rule for rule. */
function isDateTime(text: string): boolean {
  const bracket = text.indexOf('[');
  if (bracket !== -1 && !DATE_TIME_SUFFIX.test(text.slice(bracket))) return false;
  const parts = (bracket === -1 ? text : text.slice(0, bracket)).split(/T/i);
  return parts.length === 2 && isDate(parts[0]!) && isTime(parts[1]!);
}

function stringHolds(schema: PlainSchema, text: string): boolean {
  if (schema.minLength !== undefined && codePoints(text) < schema.minLength) return false;
  if (schema.maxLength !== undefined && codePoints(text) > schema.maxLength) return false;
  if (schema.pattern !== undefined && !regexp(schema.pattern).test(text)) return false;
  if (schema.format !== undefined) {
    if (schema.format !== 'date-time') throw new Error(`schema-check: unsupported format ${String(schema.format)}`);
    if (!isDateTime(text)) return false;
  }
  return true;
}

function objectHolds(schema: PlainSchema, value: Record<string, unknown>): boolean {
  const keys = Object.keys(value);
  if (schema.maxProperties !== undefined && keys.length > schema.maxProperties) return false;
  for (const name of schema.required ?? []) if (!Object.hasOwn(value, name)) return false;
  const properties = schema.properties ?? {};
  const patterns = Object.entries(schema.patternProperties ?? {});
  for (const key of keys) {
    const property = Object.hasOwn(properties, key) ? properties[key] : undefined;
    if (property !== undefined && !check(property, value[key])) return false;
    let matched = false;
    for (const [pattern, patternSchema] of patterns) {
      if (!regexp(pattern).test(key)) continue;
      matched = true;
      if (!check(patternSchema, value[key])) return false;
    }
    if (schema.additionalProperties === false && property === undefined && !matched) return false;
  }
  return true;
}

function check(schema: PlainSchema, value: unknown): boolean {
  for (const keyword of Object.keys(schema)) if (!KEYWORDS.has(keyword)) throw new Error(`schema-check: unsupported keyword ${keyword}`);
  if (schema.anyOf !== undefined && !schema.anyOf.some((option) => check(option, value))) return false;
  if (schema.const !== undefined && value !== schema.const) return false;
  switch (schema.type) {
    case undefined:
      return true;
    case 'string':
      return typeof value === 'string' && stringHolds(schema, value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) && (schema.minimum === undefined || value >= schema.minimum);
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value) && (schema.minimum === undefined || value >= schema.minimum);
    case 'boolean':
      return typeof value === 'boolean';
    case 'array':
      return (
        Array.isArray(value) &&
        (schema.minItems === undefined || value.length >= schema.minItems) &&
        (schema.maxItems === undefined || value.length <= schema.maxItems) &&
        (schema.items === undefined || value.every((item) => check(schema.items!, item)))
      );
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value) && objectHolds(schema, value as Record<string, unknown>);
    default:
      throw new Error(`schema-check: unsupported type ${String(schema.type)}`);
  }
}

/** Whether `value` (parsed JSON) matches `schema`, as TypeBox's Value.Check would answer. */
export function checkSchema<T>(schema: Checked<T>, value: unknown): value is T {
  return check(schema, value);
}
