import { defineConfig } from 'vitest/config';
import { slow } from './test/helpers/slowdown.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['./vitest.global-setup.ts'],
    setupFiles: ['./test/helpers/umask.ts'],
    // Bounds for an idle machine, scaled by MUSTER_TEST_SLOWDOWN (test/helpers/slowdown.ts).
    testTimeout: slow(30_000),
    hookTimeout: slow(30_000),
    // Two cores: end-to-end files start real servers and child processes.
    maxWorkers: 2,
  },
});
