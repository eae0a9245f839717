// Mutation testing of the TypeScript planner and the zero-shot metrics with StrykerJS, by hand (not in CI):
//   nice -n 15 npm run mutate:lib        (about an hour on two cores; docs/MUTATION.md has the figures)
// Reports: reports/mutation/mutation.html and mutation.json. The C++ core has its own mutant list and
// driver: bash scripts/mutate-core.sh.
import * as path from 'node:path';

// Stryker runs the tests in a copy of the repository under .stryker-tmp/sandbox-*/, from where the tests'
// default data path (../shared/data beside the repository) does not resolve: point them at the real folder.
process.env.ENTROPRUNE_TEST_DATA ??= path.resolve(import.meta.dirname, '..', 'shared', 'data');

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate: ['lib/plan/**/*.ts', 'lib/measure/unit-order.ts', 'lib/evaluate/tasks/metrics.ts', 'lib/evaluate/tasks/zero-shot.ts'],
  testRunner: 'vitest',
  vitest: { configFile: 'stryker.vitest.config.ts' },
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  coverageAnalysis: 'perTest',
  // Mutants of code that runs only while a module loads (plan.ts's JSON schema literal) would each need a
  // fresh environment and the whole selected suite: they are skipped and counted as "ignored".
  ignoreStatic: true,
  concurrency: 1,
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress', 'json', 'html'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  clearTextReporter: { allowColor: false, logTests: false },
  // Not needed in the sandbox: the C++ build trees other than the addon itself (node-gyp-build loads
  // build/Release/entroprune.node, else prebuilds/linux-x64/, so both are copied), outputs, the peer-install
  // test's modules. dist/ stays: the CLI tests run bin/entroprune.js, which loads it.
  ignorePatterns: ['/build-core', '/build-fuzz', '/build-mutants', '/build/CMakeFiles', '/build/*.a', '/out', '/bench', '/test/peer'],
  tempDirName: '.stryker-tmp',
};
