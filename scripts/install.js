#!/usr/bin/env node
'use strict';
// npm install hook: use the prebuilt binary for this platform when there is one that loads; otherwise build
// from source with cmake-js — and when the build tools are missing, say what is missing and what to do,
// instead of failing deep inside CMake.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function prebuildLoads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

function onPath(cmd) {
  return (process.env.PATH || '').split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, cmd)));
}

if (prebuildLoads()) process.exit(0);

const where = `${process.platform}-${process.arch}, Node ${process.versions.node} (N-API ${process.versions.napi})`;
const missing = ['cmake', 'c++'].filter((c) => !onPath(c));
if (missing.length) {
  console.error(
    `entroprune: no prebuilt binary works on ${where}, and building from source needs ${missing.join(' and ')}, which ${missing.length > 1 ? 'are' : 'is'} not on PATH.\n` +
      'Install the build tools (Debian/Ubuntu: apt-get install cmake g++ make libopenblas-dev libgfortran-12-dev nlohmann-json3-dev) and run npm install again;\n' +
      'prebuilt binaries exist for linux-x64 with glibc >= 2.33.',
  );
  process.exit(1);
}
console.error(`entroprune: no prebuilt binary for ${where}: building from source with cmake-js`);
const r = spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile'], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
