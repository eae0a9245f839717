// A model's native memory is released by dispose() at once, not when the garbage collector runs; a disposed
// model refuses further use with a clear error. Measured in a child process (its own RSS).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadModel, loadTokenizerFile, tokenizerFor } from '../lib';
import { native } from '../lib/native';
import { dataFile, REPO_ROOT, STORIES_GGUF, tempDir, TINY_HF } from './helpers/data';

const scratch = tempDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('dispose', () => {
  it('releases the weights at once, and a disposed model refuses further use', async () => {
    // f32, memory-mapped: 4 blocks at d = 1024 plus a 16k vocabulary, about 290 MB of weights
    const file = path.join(scratch, 'mid.gguf');
    native().writeSyntheticGguf({ dim: 1024, vocab: 16000, headDim: 64, layers: Array.from({ length: 4 }, () => ({ nHead: 16, nKvHead: 16, ffn: 2816 })), seed: 3 }, file);
    const size = fs.statSync(file).size;
    const program = `
      const { loadModel } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'lib', 'index.js'))});
      (async () => {
        const before = process.memoryUsage().rss;
        const m = await loadModel(${JSON.stringify(file)});
        // touch every weight: a forward pass over a few tokens
        await m.handle.evaluate({ tokens: Int32Array.from([1, 2, 3, 4]), nSeqs: 1, seqLen: 4, output: 'nll' }).promise;
        const loaded = process.memoryUsage().rss;
        m.dispose();
        const disposed = process.memoryUsage().rss;
        let error = '';
        try { m.handle.info(); } catch (e) { error = e.code + ': ' + e.message; }
        console.log(JSON.stringify({ before, loaded, disposed, error }));
      })();`;
    const r = spawnSync(process.execPath, ['-e', program], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout.trim().split('\n').pop()!);
    console.log(`model file ${(size / 2 ** 20).toFixed(0)} MiB: RSS ${(m.before / 2 ** 20).toFixed(0)} → loaded ${(m.loaded / 2 ** 20).toFixed(0)} → disposed ${(m.disposed / 2 ** 20).toFixed(0)} MiB`);
    expect(m.loaded - m.before).toBeGreaterThan(0.8 * size); // the weights were resident
    expect(m.loaded - m.disposed).toBeGreaterThan(0.8 * size); // and dispose gave them back, with no GC run
    expect(m.error).toMatch(/EP_INVALID_ARGUMENT: this model was disposed/);
  });

  it('await using disposes at the end of the scope', async () => {
    const file = path.join(scratch, 'small.gguf');
    native().writeSyntheticGguf({ dim: 32, vocab: 64, headDim: 8, layers: [{ nHead: 4, nKvHead: 2, ffn: 24 }], seed: 1 }, file);
    const m = await loadModel(file);
    {
      await using scoped = m;
      expect(scoped.info.dim).toBe(32);
    }
    expect(() => m.handle.info()).toThrow(/disposed/);
    m.dispose(); // twice is harmless
  });
});

describe('loadModel', () => {
  it('reports progress by block and can be aborted with a reason', async () => {
    const file = path.join(scratch, 'progress.gguf');
    native().writeSyntheticGguf({ dim: 64, vocab: 128, headDim: 16, layers: Array.from({ length: 6 }, () => ({ nHead: 4, nKvHead: 2, ffn: 96 })), seed: 2 }, file);
    const seen: number[] = [];
    const m = await loadModel(file, { onProgress: (p) => seen.push(p.done) });
    expect(m.info.layers).toHaveLength(6);
    expect(seen.at(-1)).toBe(6);
    const controller = new AbortController();
    const reason = new Error('no longer needed');
    controller.abort(reason);
    await expect(loadModel(file, { signal: controller.signal })).rejects.toMatchObject({ code: 'EP_CANCELLED', cause: reason });
  });
});

describe('tokenizers', () => {
  it('dispose: a disposed tokenizer refuses use, of either kind', async () => {
    const spm = tokenizerFor(await loadModel(dataFile(STORIES_GGUF)));
    expect(spm.encode('Once upon a time').length).toBeGreaterThan(2);
    spm.dispose();
    expect(() => spm.encode('Once')).toThrow(/disposed/);
    const json = loadTokenizerFile(dataFile(`${TINY_HF}/tokenizer.json`));
    expect(json.encode('Once upon a time').length).toBeGreaterThan(2);
    json.dispose();
    expect(() => json.encode('Once')).toThrow(/disposed/);
  });
});
