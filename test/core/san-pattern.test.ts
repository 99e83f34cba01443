import { describe, expect, it } from 'vitest';
import { isServiceName, normaliseSan, sanMatches } from '../../src/core/san-pattern.js';

describe('service certificate names and patterns', () => {
  it('normalises DNS names and IP addresses, and refuses anything else with SAN_INVALID', () => {
    expect(normaliseSan('Web.Example.COM')).toBe('web.example.com');
    expect(normaliseSan('*.example.com')).toBe('*.example.com');
    expect(normaliseSan('10.0.0.5')).toBe('10.0.0.5');
    expect(normaliseSan('0:0::1')).toBe('::1');
    expect(normaliseSan('[fe80::1]')).toBe('fe80::1');
    for (const bad of ['http://x', 'a..b', 'host:443', 'a.*.b', '*', '-a.b', 'a b', '', 'x'.repeat(64)]) {
      expect(() => normaliseSan(bad), bad).toThrow(expect.objectContaining({ code: 'SAN_INVALID' }));
    }
  });

  it('matches an exact name, or one label in place of a leading star', () => {
    expect(sanMatches('api.example.com', 'api.example.com')).toBe(true);
    expect(sanMatches('*.example.com', 'api.example.com')).toBe(true);
    expect(sanMatches('*.example.com', 'a.b.example.com')).toBe(false);
    expect(sanMatches('*.example.com', 'example.com')).toBe(false);
    expect(sanMatches('*.example.com', 'apiexample.com')).toBe(false);
    expect(sanMatches('*.example.com', '*.example.com')).toBe(true);
    expect(sanMatches('*.example.com', '*.b.example.com')).toBe(false);
    expect(sanMatches('10.0.0.5', '10.0.0.5')).toBe(true);
    expect(sanMatches('10.0.0.5', '10.0.0.50')).toBe(false);
  });

  it('takes service names that are safe file names', () => {
    expect(isServiceName('dockerd')).toBe(true);
    expect(isServiceName('web-1.tls_x')).toBe(true);
    for (const bad of ['', '.', '..', '../x', 'a/b', 'Web', '-x', 'x'.repeat(64)]) expect(isServiceName(bad), bad).toBe(false);
  });
});
