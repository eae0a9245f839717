#!/usr/bin/env node
'use strict';
// CLI entry: the compiled TypeScript lives in dist/ (npm run build:ts).
const { main } = require('../dist/lib/cli/main.js');
main(process.argv).then((code) => {
  // Interrupted: leave now rather than wait for anything still queued on the event loop.
  if (code === 130) process.exit(130);
  process.exitCode = code;
});
