// The layout shows the pipeline, and dependencies run one way: a stage includes (C++) or imports (TypeScript)
// only the stages before it, never one after it or a sibling. Read from the sources themselves, so a new
// back edge fails here with the file and the line.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { REPO_ROOT } from './helpers/data';

function filesUnder(dir: string, ext: RegExp): string[] {
  return fs
    .readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => ext.test(f))
    .map((f) => path.join(dir, f));
}

/** [file, line, target] for every match of `pattern` (group 1: the target) in the files. */
function edges(files: string[], pattern: RegExp): [string, number, string][] {
  const out: [string, number, string][] = [];
  for (const f of files)
    fs.readFileSync(f, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        const m = pattern.exec(line);
        if (m) out.push([path.relative(REPO_ROOT, f), i + 1, m[1]]);
      });
  return out;
}

// native/core/<stage>/: each stage may use the root headers, its own folder and the stages of lower rank.
// measure, apply and evaluate share a rank: none of them uses another.
const CORE_RANK: Record<string, number> = { '': 0, format: 1, load: 2, forward: 3, capture: 4, device: 5, measure: 6, apply: 6, evaluate: 6, synthetic: 7 };
const coreStage = (p: string) => {
  const m = /^(?:native\/)?core\/(?:([a-z]+)\/)?[^/]+$/.exec(p);
  return m ? (m[1] ?? '') : null;
};

// lib/<stage>/ (or lib/<file>.ts for the small base modules): the same rule, in pipeline order. native.ts (the
// one loader of the binary) and version.ts sit below everything.
const LIB_RANK: Record<string, number> = {
  native: 0, version: 0, util: 1, runtime: 2, load: 3, synthetic: 3, measure: 4, plan: 5, apply: 6, verify: 7, prune: 8, evaluate: 8, compare: 9, report: 10, cli: 11, index: 12,
};
const libStage = (p: string) => {
  const m = /^lib\/([a-z-]+)(?:\/|\.ts$)/.exec(p);
  return m ? m[1] : null;
};

describe('layout', () => {
  it('native/core has one folder per stage, and nothing else but the shared root headers', () => {
    const core = path.join(REPO_ROOT, 'native', 'core');
    const folders = fs.readdirSync(core).filter((f) => fs.statSync(path.join(core, f)).isDirectory());
    expect(folders.sort()).toEqual(Object.keys(CORE_RANK).filter(Boolean).sort());
    const rootFiles = fs.readdirSync(core).filter((f) => !folders.includes(f));
    expect(rootFiles.sort()).toEqual(['error.h', 'model_config.cpp', 'model_config.h', 'random.h']);
  });

  it('C++: core includes run one way (never up a stage, never into cuda/ or addon/); cuda/ and addon/ sit on top', () => {
    const native = path.join(REPO_ROOT, 'native');
    const all = edges(filesUnder(native, /\.(h|cpp|cu|cuh)$/), /^#include "([^"]+)"/);
    expect(all.length).toBeGreaterThan(200);
    const bad: string[] = [];
    for (const [file, line, target] of all) {
      const from = coreStage(file.replace(/^native\//, ''));
      const to = coreStage(target);
      if (from === null) {
        // cuda/, addon/, tools/, tests/, fuzz/: anything of the core; the addon never reaches into cuda/
        if (file.startsWith('native/addon/') && target.startsWith('cuda/')) bad.push(`${file}:${line} includes ${target}`);
        continue;
      }
      if (to === null) {
        if (target.startsWith('cuda/') || target.startsWith('addon/')) bad.push(`${file}:${line} (core/${from}) includes ${target}`);
        continue;
      }
      if (!(to in CORE_RANK)) bad.push(`${file}:${line} includes ${target}, which is in no stage`);
      else if (to !== from && CORE_RANK[to] >= CORE_RANK[from]) bad.push(`${file}:${line} (core/${from || 'root'}) includes ${target} (core/${to})`);
    }
    expect(bad).toEqual([]);
  });

  it('TypeScript: lib/ imports run one way, in pipeline order', () => {
    const lib = path.join(REPO_ROOT, 'lib');
    const all = edges(filesUnder(lib, /\.ts$/), /from '(\.[^']+)'/);
    expect(all.length).toBeGreaterThan(100);
    const bad: string[] = [];
    for (const [file, line, rel] of all) {
      const from = libStage(file);
      const to = libStage(path.relative(REPO_ROOT, path.resolve(REPO_ROOT, path.dirname(file), rel)) + (rel.endsWith('.ts') ? '' : '.ts'));
      if (!from || !to) bad.push(`${file}:${line}: ${rel} is outside lib's stages`);
      else if (!(from in LIB_RANK) || !(to in LIB_RANK)) bad.push(`${file}:${line}: lib/${!(from in LIB_RANK) ? from : to} has no rank in this test`);
      else if (to !== from && LIB_RANK[to] >= LIB_RANK[from]) bad.push(`${file}:${line} (lib/${from}) imports ${rel} (lib/${to})`);
    }
    expect(bad).toEqual([]);
  });

  it('the check can fail: a back edge is reported', () => {
    expect(coreStage('core/format/gguf_file.h')).toBe('format');
    expect(coreStage('core/error.h')).toBe('');
    expect(CORE_RANK[coreStage('core/measure/analysis.h')!] >= CORE_RANK[coreStage('core/load/model.cpp')!]).toBe(true);
    expect(libStage('lib/plan/planner.ts')).toBe('plan');
    expect(libStage('lib/native.ts')).toBe('native');
  });
});
