/** The log formats `--log-format` and MUSTER_LOG_FORMAT take (apart from logger.ts, so reading settings does not load pino). */
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
