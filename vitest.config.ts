import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The shared data folder must come out of the run byte-identical (test/data-guard.ts).
    globalSetup: ['test/data-guard.ts'],
    // Native addon: a crash then fails one file instead of the whole run.
    pool: 'forks',
    testTimeout: 180_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
