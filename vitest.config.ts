import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/gpu/**', '**/node_modules/**'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: 'forks',
    // Suites that start servers or a control plane share a 2-core machine: run files one at a time.
    fileParallelism: false,
  },
});
