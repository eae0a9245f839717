// Shipping: `npm pack` carries the linux-x64 prebuild and the compiled JS; the tarball installs into an empty
// project on a machine with no compiler (cmake and c++ hidden from PATH), and `npx entroprune` runs. Without
// a usable prebuild and without the tools, the install stops with a message that says what to install.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { dataFile, REPO_ROOT, STORIES_GGUF, tempDir } from './helpers/data';

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
    const prebuild = path.join(REPO_ROOT, 'prebuilds', 'linux-x64', 'entroprune.node');
    const built = path.join(REPO_ROOT, 'build', 'Release', 'entroprune.node');
    // The real prebuild step (prebuildify through cmake-js), unless an up-to-date prebuild is already there.
    if (!fs.existsSync(prebuild) || (fs.existsSync(built) && fs.statSync(built).mtimeMs > fs.statSync(prebuild).mtimeMs)) {
      const b = sh('npm', ['run', 'prebuild:linux'], REPO_ROOT, process.env, 900_000);
      expect(b.code, b.out.slice(-3000)).toBe(0);
    }
    const pack = sh('npm', ['pack', '--json', '--pack-destination', scratch], REPO_ROOT);
    expect(pack.code, pack.out).toBe(0);
    const info = JSON.parse(pack.out.slice(pack.out.indexOf('['), pack.out.lastIndexOf(']') + 1))[0];
    const files: string[] = info.files.map((f: { path: string }) => f.path);
    for (const f of ['prebuilds/linux-x64/entroprune.node', 'dist/lib/index.js', 'dist/lib/cli/main.js', 'bin/entroprune.js', 'scripts/install.js', 'native/core/forward/forward.cpp', 'CMakeLists.txt'])
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
    const help = sh('npx', ['entroprune', '--help'], project, env);
    expect(help.code, help.out).toBe(0);
    expect(help.out).toMatch(/Usage: entroprune/);
    expect(help.out).toMatch(/compare/);
    const ver = sh('npx', ['entroprune', '--version'], project, env);
    expect(ver.out.trim()).toBe(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version);
    const run = sh('npx', ['entroprune', 'info', dataFile(STORIES_GGUF), '--json'], project, env);
    expect(run.code, run.out).toBe(0);
    expect(JSON.parse(run.out.trim().split('\n')[0]).layers).toHaveLength(5);

    // No usable prebuild and no tools: a clear message, not a CMake stack trace.
    const pkg = path.join(project, 'node_modules', 'entroprune');
    fs.rmSync(path.join(pkg, 'prebuilds'), { recursive: true, force: true });
    const fallback = sh('node', [path.join(pkg, 'scripts', 'install.js')], pkg, env);
    expect(fallback.code).toBe(1);
    expect(fallback.out).toMatch(/no prebuilt binary works on linux-x64.*building from source needs cmake and c\+\+, which are not on PATH/);
    expect(fallback.out).toMatch(/apt-get install cmake g\+\+/);
  }, 1_200_000);
});
