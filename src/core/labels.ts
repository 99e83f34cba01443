/**
 * Node labels: string keys to string values, bounded in number and size.
 * One schema for the wire and what is written; the store reads records with
 * a laxer one (see StoredLabels).
 */
import Type from 'typebox';

/** Limits on labels. */
export const LABEL_LIMITS = { count: 32, key: 63, value: 253 } as const;

const LabelKey = Type.String({ pattern: `^[A-Za-z0-9._/-]{1,${LABEL_LIMITS.key}}$` });
const LabelValue = Type.String({ maxLength: LABEL_LIMITS.value });

/** Node labels: string to string. A key outside the pattern is refused: a record's key pattern alone lets such keys through unchecked. */
export const Labels = Type.Record(LabelKey, LabelValue, { maxProperties: LABEL_LIMITS.count, additionalProperties: false });
export type Labels = Type.Static<typeof Labels>;

/**
 * Labels as the store reads them: before issue 26 the API let keys outside
 * the pattern (with any value) through, and records that hold them must
 * still be read and rewritten (a renewal copies them), not become corrupt
 * state. New labels only ever come through {@link Labels}.
 */
export const StoredLabels = Type.Record(LabelKey, LabelValue, { maxProperties: LABEL_LIMITS.count });
