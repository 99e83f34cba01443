import { describe, expect, it } from 'vitest';
import { slowdownFactor } from './slowdown.js';

describe('MUSTER_TEST_SLOWDOWN', () => {
  it('is 1 when unset or empty, and the given factor otherwise', () => {
    expect(slowdownFactor({})).toBe(1);
    expect(slowdownFactor({ MUSTER_TEST_SLOWDOWN: '' })).toBe(1);
    expect(slowdownFactor({ MUSTER_TEST_SLOWDOWN: '3' })).toBe(3);
    expect(slowdownFactor({ MUSTER_TEST_SLOWDOWN: '1.5' })).toBe(1.5);
  });

  it('refuses a value that would shrink every limit (a typo, 0, below 1)', () => {
    for (const bad of ['x', '0', '0.5', '-2', 'NaN', 'Infinity'])
      expect(() => slowdownFactor({ MUSTER_TEST_SLOWDOWN: bad })).toThrow(/MUSTER_TEST_SLOWDOWN must be a number ≥ 1/);
  });
});
