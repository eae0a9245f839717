// Shipping: `npm pack` carries the linux-x64 prebuild and the compiled JS; the tarball installs into an empty
// project on a machine with no compiler (cmake and c++ hidden from PATH), and `npx entroprune` runs. Without
// a usable prebuild and without the tools, the install stops with a message that says what to install.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadError } from '../lib/native';
import { dataFile, REPO_ROOT, STORIES_GGUF, tempDir, TINYSTORIES_TEXT } from './helpers/data';

const scratch = tempDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** A PATH with node, npm and a shell only: no cmake, no c++. */
function bareBin(): string {
  const bin = path.join(scratch, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  const npmCli = fs.realpathSync('/usr/bin/npm');
  const links: Record<string, string> = { node: process.execPath, npm: npmCli, npx: path.join(path.dirname(npmCli), 'npx-cli.js'), sh: '/bin/sh', env: '/usr/bin/env' };
  for (const [name, target] of Object.entries(links)) if (!fs.existsSync(path.join(bin, name))) fs.symlinkSync(target, path.join(bin, name));
  return bin;
}

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env, timeout = 600_000) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout });
  return { code: r.status, out: `${r.stdout}\n${r.stderr}` };
}

describe('npm package', () => {
  it('packs the prebuild, installs without a compiler, runs, and explains a missing toolchain', () => {
    // npm pack alone must produce a package with its binary: the prepack hook builds dist/ and, when it is
    // missing or stale, the linux-x64 prebuild (prebuildify through cmake-js). On a fresh clone it builds it.
    const pack = spawnSync('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 1_200_000 });
    expect(pack.status, `${pack.stdout}\n${pack.stderr}`.slice(-4000)).toBe(0);
    // npm's JSON file list is on stdout (the prepack hook's build output goes to stderr)
    const info = JSON.parse(pack.stdout.slice(pack.stdout.lastIndexOf('[\n  {')))[0];
    const files: string[] = info.files.map((f: { path: string }) => f.path);
    for (const f of ['prebuilds/linux-x64/entroprune.node', 'scripts/llama-cpp/llama-logits.mjs', 'scripts/llama-cpp/llama-speed.mjs', 'dist/lib/index.js', 'dist/lib/cli/main.js', 'bin/entroprune.js', 'scripts/install.js', 'native/core/forward/forward.cpp', 'CMakeLists.txt'])
      expect(files, f).toContain(f);
    expect(files.some((f) => f.startsWith('test/') || f.startsWith('build/'))).toBe(false);
    // what users run and nothing else: no maps to absent TypeScript, no C++ tests, fuzzers or tools; a licence
    // and the method document the CLI points to
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(files.filter((f) => /^native\/(tests|fuzz|tools)\//.test(f))).toEqual([]);
    expect(files).toContain('LICENSE');
    expect(files).toContain('docs/METHOD.md');
    const tgz = path.join(scratch, info.filename);

    const project = path.join(scratch, 'app');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const env = { HOME: process.env.HOME, PATH: bareBin(), npm_config_cache: process.env.npm_config_cache ?? path.join(process.env.HOME ?? '/root', '.npm') };
    expect(sh('sh', ['-c', 'command -v cmake || command -v c++ || echo none'], project, env).out.trim()).toBe('none');
    const install = sh('npm', ['install', tgz, '--no-audit', '--no-fund'], project, env);
    expect(install.code, install.out).toBe(0);
    // the build tools are not a dependency of users who get a binary
    for (const tool of ['cmake-js', 'node-addon-api']) expect(fs.existsSync(path.join(project, 'node_modules', tool)), tool).toBe(false);
    const help = sh('npx', ['entroprune', '--help'], project, env);
    expect(help.code, help.out).toBe(0);
    expect(help.out).toMatch(/Usage: entroprune/);
    expect(help.out).toMatch(/compare/);
    const ver = sh('npx', ['entroprune', '--version'], project, env);
    expect(ver.out.trim()).toBe(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version);
    const run = sh('npx', ['entroprune', 'info', dataFile(STORIES_GGUF), '--json'], project, env);
    expect(run.code, run.out).toBe(0);
    expect(JSON.parse(run.out.trim().split('\n')[0]).layers).toHaveLength(5);
    // The main job's command from the installed package, compilers still hidden.
    const calib = path.join(scratch, 'calib.txt');
    fs.writeFileSync(calib, fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(500_000, 600_000));
    const pruned = sh('npx', ['entroprune', 'prune', dataFile(STORIES_GGUF), '--ratio', '0.3', '--calib', calib, '--samples', '16', '--seq-len', '128', '-o', path.join(project, 'pruned.gguf'), '--json'], project, env);
    expect(pruned.code, pruned.out).toBe(0);
    const summary = JSON.parse(pruned.out.trim().split('\n').filter((l) => l.startsWith('{')).pop()!);
    expect(Math.abs(summary.achieved.ratio - 0.3)).toBeLessThan(0.005);
    expect(summary.verify.some((r: { status: string }) => r.status === 'pass')).toBe(true);
    // llama.cpp is an optional peer: without it verify says what to install
    expect(summary.verify.find((r: { runtime: string }) => r.runtime === 'llama.cpp')).toMatchObject({ status: 'skipped', detail: expect.stringMatching(/npm install node-llama-cpp/) });

    // No usable prebuild and no tools: a clear message, not a CMake stack trace.
    const pkg = path.join(project, 'node_modules', 'entroprune');
    fs.rmSync(path.join(pkg, 'prebuilds'), { recursive: true, force: true });
    const fallback = sh('node', [path.join(pkg, 'scripts', 'install.js')], pkg, env);
    expect(fallback.code).toBe(1);
    expect(fallback.out).toMatch(/no prebuilt binary works on linux-x64.*building from source needs\n {2}cmake and c\+\+, which are not on PATH: apt-get install cmake g\+\+/);
    expect(fallback.out).toMatch(/the npm packages cmake-js and node-addon-api: npm install cmake-js node-addon-api/);

    // A prebuild that needs a shared library the system lacks names the library, not the compiler.
    const stubDir = path.join(scratch, 'stub');
    fs.mkdirSync(stubDir, { recursive: true });
    fs.writeFileSync(path.join(stubDir, 'lib.c'), 'int entroprune_test_missing(void) { return 1; }\n');
    fs.writeFileSync(path.join(stubDir, 'addon.c'), 'int entroprune_test_missing(void);\nint touch(void) { return entroprune_test_missing(); }\n');
    expect(sh('cc', ['-shared', '-fPIC', '-o', path.join(stubDir, 'libentroprune-missing.so.1'), '-Wl,-soname,libentroprune-missing.so.1', path.join(stubDir, 'lib.c')], stubDir).code).toBe(0);
    fs.mkdirSync(path.join(pkg, 'prebuilds', 'linux-x64'), { recursive: true });
    const cc = sh('cc', ['-shared', '-fPIC', '-o', path.join(pkg, 'prebuilds', 'linux-x64', 'entroprune.node'), path.join(stubDir, 'addon.c'), path.join(stubDir, 'libentroprune-missing.so.1')], stubDir);
    expect(cc.code, cc.out).toBe(0);
    const needsLib = sh('node', [path.join(pkg, 'scripts', 'install.js')], pkg, env);
    expect(needsLib.code).toBe(1);
    expect(needsLib.out).toMatch(/the prebuilt binary for linux-x64.*needs a system library: libentroprune-missing\.so\.1 not found: install the package that provides it/);
    expect(needsLib.out).not.toMatch(/cmake|c\+\+/);
  }, 1_800_000);

  it('the binary needs no newer glibc and libstdc++ than the README states', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const binary: string = require('node-gyp-build').path(REPO_ROOT);
    const dump = sh('objdump', ['-T', binary], REPO_ROOT);
    expect(dump.code, dump.out).toBe(0);
    const highest = (prefix: string) =>
      [...dump.out.matchAll(new RegExp(`${prefix}_([0-9.]+)`, 'g'))].map((m) => m[1].split('.').map(Number)).reduce((a, b) => (compare(a, b) >= 0 ? a : b), [0]);
    const compare = (a: number[], b: number[]) => {
      for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
      return 0;
    };
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const floor = /glibc ≥ (2\.\d+) and\s+libstdc\+\+ ≥ GLIBCXX_(3\.4\.\d+)/.exec(readme);
    expect(floor, 'README states the floor').not.toBeNull();
    const glibc = highest('GLIBC');
    const glibcxx = highest('GLIBCXX');
    expect(compare(glibc, floor![1].split('.').map(Number)), `needs GLIBC_${glibc.join('.')}`).toBeLessThanOrEqual(0);
    expect(compare(glibcxx, floor![2].split('.').map(Number)), `needs GLIBCXX_${glibcxx.join('.')}`).toBeLessThanOrEqual(0);
  });

  it('a binary that cannot load for want of libgomp says so', () => {
    const e = loadError(new Error('libgomp.so.1: cannot open shared object file: No such file or directory'));
    expect(e.message).toMatch(/libgomp\.so\.1 not found: install libgomp1/);
    expect((e as Error & { cause?: unknown }).cause).toBeInstanceOf(Error);
  });
});
