#!/usr/bin/env node
'use strict';
// prebuildify has no cmake-js backend and passes node-gyp style arguments (e.g. --target=<node version>,
// which cmake-js would read as a CMake target). This shim keeps only --arch and --debug and runs
// `cmake-js rebuild`, so prebuildify can still name, strip and copy the result into prebuilds/.
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const args = ['rebuild'];
for (const a of process.argv.slice(2)) {
  if (a.startsWith('--arch=')) args.push('--arch', a.slice('--arch='.length));
  else if (a === '--debug') args.push('--debug');
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, ...args], { stdio: 'inherit', cwd: path.resolve(__dirname, '..') });
process.exit(r.status ?? 1);
