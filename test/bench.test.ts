// Speed and memory: the KV-cache decoder reproduces the model's known greedy story, and `bench` measures
// prefill/decode speed and peak memory of two models in both engines in one run.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadModel, tokenizerFor } from '../lib';
import { runCli } from './helpers/cli';
import { dataFile, STORIES_GGUF, tempDir } from './helpers/data';

const scratch = tempDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('KV-cache decoding', () => {
  it('greedy generation from BOS is the reference story of the data README', async () => {
    const model = await loadModel(dataFile(STORIES_GGUF));
    const r = await model.handle.generate({ prompt: Int32Array.from([1]), tokens: 40 }).promise;
    expect(Array.from(r.tokens.subarray(0, 20))).toEqual([403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337]);
    expect(tokenizerFor(model).decode(r.tokens)).toMatch(/^ ?Once upon a time, there was a little girl named Lily\. She loved to play outside in the park\./);
    expect(r.decodeSteps).toBe(39);
    expect(r.cacheBytes).toBe(5 * 41 * 4 * 8 * 2 * 4); // layers × positions × kv heads × head size × (k, v) × f32
  });
});

describe('entroprune bench', () => {
  it('measures both models in both engines side by side, with speed-ups against the baseline', () => {
    const pruned = path.join(scratch, 'p.gguf');
    const p = runCli(['prune', dataFile(STORIES_GGUF), '--ratio', '0.4', '--calib', dataFile('text/wikitext-2-raw/wiki.valid.raw'), '--samples', '8', '--seq-len', '128', '-o', pruned, '--no-verify', '--device', 'cpu']);
    expect(p.code, p.stderr).toBe(0);
    const r = runCli(['bench', pruned, '--against', dataFile(STORIES_GGUF), '--prompt', '64', '--generate', '16', '--rounds', '1', '--threads', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.rows.map((x: { engine: string; role: string }) => `${x.engine}/${x.role}`)).toEqual(['entroprune/baseline', 'entroprune/model', 'llama.cpp/baseline', 'llama.cpp/model']);
    for (const row of j.rows) {
      expect(row.status, row.detail).toBe('ok');
      expect(row.prefillTokensPerSecond).toBeGreaterThan(0);
      expect(row.decodeTokensPerSecond).toBeGreaterThan(0);
      expect(row.peakRssBytes).toBeGreaterThan(10 * 2 ** 20);
      if (row.role === 'model') {
        expect(row.prefillSpeedup).toBeGreaterThan(0);
        expect(row.decodeSpeedup).toBeGreaterThan(0);
      }
    }
    const table = runCli(['bench', pruned, '--engine', 'entroprune', '--rounds', '1', '--prompt', '32', '--generate', '4']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/p\.gguf\s+entroprune\s+\d+\s+\d+\s+[\d.]+ MiB/);
  });

  it('a missing model is a clear error', () => {
    const r = runCli(['bench', path.join(scratch, 'nope.gguf')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nope\.gguf: no such model/);
  });
});
