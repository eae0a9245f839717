// The public API as a strict TypeScript user meets it: test/api/pipeline.ts is compiled with `strict` against
// the built declarations (a type error fails here) and run on stories260K.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { dataFile, REPO_ROOT, STORIES_GGUF, tempDir, TINYSTORIES_TEXT } from './helpers/data';

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('Node API', () => {
  it('the in-memory pipeline and prune() compile under strict and give the same model', () => {
    const build = path.join(dir, 'build');
    const tsc = spawnSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--strict', '--target', 'ES2022', '--module', 'commonjs', '--moduleResolution', 'node', '--types', 'node', '--skipLibCheck', '--outDir', build, '--rootDir', REPO_ROOT, path.join(REPO_ROOT, 'test', 'api', 'pipeline.ts')], { encoding: 'utf8', cwd: REPO_ROOT });
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
    const calib = path.join(dir, 'calib.txt');
    fs.writeFileSync(calib, fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(500_000, 700_000));
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    // The compiled program imports ../../dist/lib: run it from a copy placed where that path resolves.
    const program = path.join(REPO_ROOT, 'test', 'api', `.pipeline-${process.pid}.js`);
    fs.copyFileSync(path.join(build, 'test', 'api', 'pipeline.js'), program);
    try {
      const r = spawnSync(process.execPath, [program, dataFile(STORIES_GGUF), calib, out], { encoding: 'utf8', timeout: 300_000 });
      expect(r.status, r.stderr).toBe(0);
      const res = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(Math.abs(res.achieved - 0.3)).toBeLessThan(0.005);
      expect(res.oneCallAchieved).toBe(res.achieved);
      expect(res.oneCall).toBe(res.stepwise); // the same analysis, plan and model, byte for byte
      expect(res.refinedOneCall).toBe(res.refinedStepwise); // the default prune is refinedPlan + applyPlan
      expect(typeof res.chosen).toBe('string');
      expect(res.candidates).toBeGreaterThanOrEqual(2); // at least the plan as planned and the uniform-ratio one
      expect(res.files).toEqual(['one-call.gguf', 'refined-one-call.gguf', 'refined-stepwise.gguf', 'stepwise.gguf']); // in memory: no analysis or plan files
      expect(res.warnings).toEqual([]);
      expect(res.ppl).toBeGreaterThan(1);
      expect(res.ppl).toBeLessThan(100);
    } finally {
      fs.rmSync(program, { force: true });
    }
  });
});
