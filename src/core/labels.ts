/**
 * Node labels: string keys to string values, bounded in number and size.
 * One schema for the wire and the store.
 */
import Type from 'typebox';

/** Limits on labels. */
export const LABEL_LIMITS = { count: 32, key: 63, value: 253 } as const;

/** Node labels: string to string. */
export const Labels = Type.Record(Type.String({ pattern: `^[A-Za-z0-9._/-]{1,${LABEL_LIMITS.key}}$` }), Type.String({ maxLength: LABEL_LIMITS.value }), {
  maxProperties: LABEL_LIMITS.count,
});
export type Labels = Type.Static<typeof Labels>;
