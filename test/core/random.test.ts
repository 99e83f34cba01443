/** The system Random: pooled draws stay distinct, sized and unbiased across pool refills. */
import { describe, expect, it } from 'vitest';
import { systemRandom } from '../../src/core/random.js';

describe('systemRandom', () => {
  it('gives distinct draws of the size asked, across many refills of its pool', () => {
    const draws = Array.from({ length: 5_000 }, (_, i) => systemRandom.bytes(1 + (i % 40)));
    expect(draws.every((d, i) => d.length === 1 + (i % 40))).toBe(true);
    const wide = draws.filter((d) => d.length >= 16).map((d) => d.toString('hex'));
    expect(new Set(wide).size).toBe(wide.length);
    // A draw is a copy: changing it changes no other draw.
    const a = systemRandom.bytes(16);
    const b = Buffer.from(a);
    systemRandom.bytes(16).fill(0);
    expect(a.equals(b)).toBe(true);
  });

  it('serves large draws too, and its bytes are uniform (chi-square over 256 values)', () => {
    expect(systemRandom.bytes(100_000)).toHaveLength(100_000);
    const counts = new Array<number>(256).fill(0);
    for (let i = 0; i < 4_000; i++) for (const byte of systemRandom.bytes(32)) counts[byte]! += 1;
    const expected = (4_000 * 32) / 256;
    const chi = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    // 255 degrees of freedom: the 99.999th percentile is ~360.
    expect(chi).toBeLessThan(360);
    const floats = Array.from({ length: 1_000 }, () => systemRandom.float());
    expect(floats.every((f) => f >= 0 && f < 1)).toBe(true);
  });
});
