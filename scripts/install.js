#!/usr/bin/env node
'use strict';
// npm install hook: use the prebuilt binary for this platform when there is one that loads; otherwise build
// from source with cmake-js. The build tools are not dependencies of the package (users with a prebuild never
// download them): when they are missing, say what is missing and what to do, instead of failing deep inside
// CMake. A prebuild that exists but cannot load for want of a system library names that library.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const where = `${process.platform}-${process.arch}, Node ${process.versions.node} (N-API ${process.versions.napi})`;

/** The load error of the binary node-gyp-build would use, or null when it loads (or none exists). */
function prebuildError() {
  let file;
  try {
    file = require('node-gyp-build').path(root);
  } catch {
    return { missing: true };
  }
  try {
    require(file);
    return null;
  } catch (e) {
    return { file, message: String(e && e.message) };
  }
}

/** "libgomp.so.1 not found: install libgomp1", for a binary that needs a shared library the system lacks. */
function missingLibrary(message) {
  const m = /(lib[\w.+-]+\.so[\d.]*): cannot open shared object file/.exec(message);
  if (!m) return null;
  const packages = { 'libgomp.so.1': 'libgomp1 (Debian/Ubuntu) or libgomp (RHEL/Fedora)', 'libstdc++.so.6': 'libstdc++6', 'libgcc_s.so.1': 'libgcc-s1' };
  return `${m[1]} not found: install ${packages[m[1]] || 'the package that provides it'}`;
}

const err = prebuildError();
if (err === null) process.exit(0);
if (err.file) {
  const lib = missingLibrary(err.message);
  if (lib) {
    console.error(`entroprune: the prebuilt binary for ${where} needs a system library: ${lib}, then run npm rebuild entroprune`);
    process.exit(1);
  }
  if (/GLIBC(XX)?_[\d.]+' not found/.test(err.message))
    console.error(`entroprune: the prebuilt binary needs a newer C library than this system has (${err.message.split('\n')[0]}); prebuilds need glibc >= 2.34: building from source`);
}

function onPath(cmd) {
  return (process.env.PATH || '').split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, cmd)));
}
function resolves(name) {
  try {
    require.resolve(`${name}/package.json`, { paths: [root] });
    return true;
  } catch {
    return false;
  }
}

const missingTools = ['cmake', 'c++'].filter((c) => !onPath(c));
const missingPackages = ['cmake-js', 'node-addon-api'].filter((p) => !resolves(p));
if (missingTools.length || missingPackages.length) {
  const lines = [`entroprune: no prebuilt binary works on ${where}, and building from source needs`];
  if (missingTools.length) lines.push(`  ${missingTools.join(' and ')}, which ${missingTools.length > 1 ? 'are' : 'is'} not on PATH: apt-get install cmake g++ make libopenblas-dev libgfortran-12-dev nlohmann-json3-dev libgomp1 (Debian/Ubuntu)`);
  if (missingPackages.length) lines.push(`  the npm packages ${missingPackages.join(' and ')}: npm install ${missingPackages.join(' ')}`);
  lines.push('then run npm rebuild entroprune. Prebuilt binaries exist for linux-x64 with glibc >= 2.34.');
  console.error(lines.join('\n'));
  process.exit(1);
}
console.error(`entroprune: no prebuilt binary for ${where}: building from source with cmake-js`);
const r = spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js', { paths: [root] }), 'compile'], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
