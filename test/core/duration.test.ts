import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { DEFAULT_CERT_EXPIRY_MS, MIN_CERT_EXPIRY_MS, formatDuration, parseCertExpiry, parseDuration } from '../../src/core/duration.js';
import { seeded, withSeed } from '../helpers/property.js';

const H = 3_600_000;

describe('parseDuration', () => {
  it.each([
    ['90m', 90 * 60_000],
    ['1h', H],
    ['2160h', 2160 * H],
    ['90d', 90 * 24 * H],
    ['1h30m', 1.5 * H],
    ['1.5h', 1.5 * H],
    ['1d12h', 36 * H],
    ['45s', 45_000],
    ['500ms', 500],
  ])('reads %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([[''], ['1'], ['h'], ['1x'], ['-1h'], ['1 h'], [' 1h'], ['1e3h'], ['1h-'], ['1.h'], ['.5h'], ['1H'], ['99999999999d'], ['NaNh']])(
    'refuses %j',
    (text) => {
      expect(() => parseDuration(text)).toThrow(expect.objectContaining({ code: 'DURATION_INVALID' }));
    },
  );

  it('names the bad input in the message', () => {
    expect(() => parseDuration('soon')).toThrow('invalid duration "soon"');
  });

  it(withSeed('only returns a finite non-negative number or throws DURATION_INVALID, for any input'), () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[0-9.]{0,6}(ms|s|m|h|d|x)?[0-9]{0,3}[hmd]?$/), fc.anything()), (input) => {
        try {
          const ms = parseDuration(input);
          expect(Number.isFinite(ms) && ms >= 0).toBe(true);
        } catch (error) {
          expect(error).toBeInstanceOf(MusterError);
          expect((error as MusterError).code).toBe('DURATION_INVALID');
        }
      }),
      seeded(1000),
    );
  });

  it(withSeed('formatDuration → parseDuration round-trips whole seconds'), () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 * 365 * 86_400 }), (seconds) => {
        expect(parseDuration(formatDuration(seconds * 1000))).toBe(seconds * 1000);
      }),
      seeded(1000),
    );
  });
});

describe('parseCertExpiry', () => {
  it('accepts 5m and up (issue 31), refuses less with its own code, never falls back', () => {
    expect(parseCertExpiry('5m')).toBe(MIN_CERT_EXPIRY_MS);
    expect(MIN_CERT_EXPIRY_MS).toBe(5 * 60_000);
    expect(parseCertExpiry('300s')).toBe(MIN_CERT_EXPIRY_MS);
    expect(parseCertExpiry('59m')).toBe(59 * 60_000);
    expect(parseCertExpiry('2160h')).toBe(DEFAULT_CERT_EXPIRY_MS);
    expect(() => parseCertExpiry('4m59s')).toThrow(expect.objectContaining({ code: 'CERT_EXPIRY_TOO_SHORT', exitCode: 2, statusCode: 400 }));
    expect(() => parseCertExpiry('4m59s')).toThrow('certificate expiry 4m59s is below the minimum of 5m');
    expect(() => parseCertExpiry('1m')).toThrow(expect.objectContaining({ code: 'CERT_EXPIRY_TOO_SHORT' }));
    expect(() => parseCertExpiry('1')).toThrow(expect.objectContaining({ code: 'DURATION_INVALID' }));
  });

  it('formats compactly', () => {
    expect(formatDuration(2160 * H)).toBe('2160h');
    expect(formatDuration(90 * 60_000)).toBe('1h30m');
    expect(formatDuration(45_000)).toBe('45s');
  });
});
