// Vitest config for Stryker (`npm run mutate:lib`, stryker.config.mjs): only the test files that exercise the
// mutated modules (lib/plan/, lib/measure/unit-order.ts, lib/evaluate/tasks/metrics.ts and zero-shot.ts), so each mutant runs seconds of
// tests instead of the whole ~10-minute suite. The rest as in vitest.config.ts; the Stryker vitest runner
// itself switches the pool to one worker thread and enables per-test coverage.
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

// Fast, model-free files first: a mutant they kill then stops the run (Stryker bails at the first failure)
// before the files that load models and measure.
const ORDER = ['test/plan-values.test.ts', 'test/refine.test.ts', 'test/tasks-values.test.ts', 'test/plan.test.ts', 'test/tasks.test.ts', 'test/refit-damage.test.ts', 'test/fidelity.test.ts'];

class FastFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => ORDER.findIndex((name) => f.moduleId.replace(/\\/g, '/').endsWith(name));
    return [...files].sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  test: {
    include: ORDER,
    // The shared data folder must come out of the run byte-identical (test/data-guard.ts).
    globalSetup: ['test/data-guard.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    sequence: { sequencer: FastFirst },
  },
});
