#!/usr/bin/env node
'use strict';
// `npm pack` / `npm publish` hook: a package is never made without its compiled JavaScript and its prebuilt
// binary. dist/ is rebuilt every time (tsc, seconds); the linux-x64 prebuild (CUDA compiled in when nvcc is
// present) when it is missing or older than any native source, since a full native build takes minutes.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
// The builds' output goes to stderr: npm pack --json writes its file list to stdout.
const run = (args) => {
  const r = spawnSync('npm', ['run', ...args], { stdio: ['ignore', process.stderr, process.stderr], cwd: root });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
function newest(p) {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  return fs.readdirSync(p).reduce((m, f) => Math.max(m, newest(path.join(p, f))), 0);
}

run(['build:ts']);
if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error('entroprune prepack: prebuilds are made on linux-x64 only; this package will build from source where it is installed');
  process.exit(1);
}
const prebuild = path.join(root, 'prebuilds', 'linux-x64', 'entroprune.node');
const sources = Math.max(...['native/core', 'native/cuda', 'native/addon', 'CMakeLists.txt'].map((p) => newest(path.join(root, p))));
if (!fs.existsSync(prebuild) || fs.statSync(prebuild).mtimeMs < sources) run(['prebuild:linux']);
else console.error('entroprune prepack: the linux-x64 prebuild is newer than every native source: kept');
if (!fs.existsSync(prebuild)) {
  console.error(`entroprune prepack: ${prebuild} was not built: refusing to pack a package without its binary`);
  process.exit(1);
}
