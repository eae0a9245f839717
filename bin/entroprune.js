#!/usr/bin/env node
'use strict';
// CLI entry: the compiled TypeScript lives in dist/ (npm run build:ts).
const { main } = require('../dist/lib/cli/main.js');
main(process.argv).then((code) => {
  process.exitCode = code;
});
