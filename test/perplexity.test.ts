// Perplexity protocol and its cross-format agreement on the real models.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { cudaInfo, loadModel, perplexity, perplexityOfTokens, resolveDevice, tokenizerFor } from '../lib';
import { compare } from '../lib/compare/compare';
import { beyondContextWarning } from '../lib/evaluate/perplexity';
import { scoreEncoded } from '../lib/evaluate/tasks/loglikelihood';
import { dataFile, STORIES_BIN, STORIES_GGUF, TINY_HF, TINYSTORIES_TEXT, WIKI_TEST } from './helpers/data';

describe('perplexity', () => {
  it('stories260K gives the same perplexity from the llama2.c .bin and the .gguf (1e-4 relative)', async () => {
    const text = fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8');
    const results = [];
    for (const file of [STORIES_BIN, STORIES_GGUF]) {
      const model = await loadModel(dataFile(file));
      const tok = tokenizerFor(model); // tok512.bin beside the .bin; the vocab embedded in the .gguf
      results.push(await perplexity(model, tok, text, { seqLen: 256, maxTokens: 32768 }));
    }
    const [bin, gguf] = results;
    console.log(`stories260K TinyStories ppl: bin ${bin.ppl.toFixed(6)}, gguf ${gguf.ppl.toFixed(6)}`);
    expect(bin.tokens).toBe(gguf.tokens);
    expect(Math.abs(bin.ppl - gguf.ppl) / bin.ppl).toBeLessThan(1e-4);
    expect(bin.ppl).toBeGreaterThan(2);
    expect(bin.ppl).toBeLessThan(8);
  });

  it('reproduces the data README anchors (BOS-prefixed 256-token windows over the first 20,000 characters)', async () => {
    const model = await loadModel(dataFile(STORIES_BIN));
    const tok = tokenizerFor(model);
    const anchors: [string, number, number, number][] = [
      [TINYSTORIES_TEXT, 9602, 4.48, 0.02],
      [WIKI_TEST, 12389, 115, 1.0], // README gives ≈115 (rounded)
    ];
    for (const [file, expectTokens, expectPpl, tol] of anchors) {
      const text = fs.readFileSync(dataFile(file), 'utf8').slice(0, 20000);
      const ids = tok.encode(text, { bos: false });
      expect(ids.length).toBe(expectTokens);
      const windows = Math.floor(ids.length / 256);
      const batch = new Int32Array(windows * 257);
      for (let w = 0; w < windows; w++) {
        batch[w * 257] = 1;
        batch.set(ids.subarray(w * 256, (w + 1) * 256), w * 257 + 1);
      }
      const nll = await model.handle.evaluate({ tokens: batch, nSeqs: windows, seqLen: 257, output: 'nll' }).promise;
      const ppl = Math.exp(nll.reduce((a, b) => a + b, 0) / nll.length);
      console.log(`stories260K README protocol on ${file}: ppl ${ppl.toFixed(3)} (README ≈ ${expectPpl})`);
      expect(Math.abs(ppl - expectPpl)).toBeLessThan(tol);
    }
  });

  it('TinyStories-656K: sensible perplexity in domain, far higher out of domain', async () => {
    const model = await loadModel(dataFile(TINY_HF));
    const tok = tokenizerFor(model);
    const inDomain = await perplexity(model, tok, fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8'), { seqLen: 512, maxTokens: 16384 });
    console.log(`TinyStories-656K TinyStories ppl ${inDomain.ppl.toFixed(3)} over ${inDomain.predicted} tokens`);
    expect(inDomain.ppl).toBeGreaterThan(1.5);
    // Its 2048-token BPE merges whole phrases ("upon▁a▁tim"), so per-token perplexity is higher than a
    // 512-token model's; the float64 reference test pins the logits themselves.
    expect(inDomain.ppl).toBeLessThan(60);
    const wiki = await perplexity(model, tok, fs.readFileSync(dataFile(WIKI_TEST), 'utf8').slice(0, 60000), { seqLen: 512 });
    expect(wiki.ppl).toBeGreaterThan(inDomain.ppl * 5);
  });

  it('follows the windowing protocol exactly', async () => {
    const model = await loadModel(dataFile(STORIES_GGUF));
    const stream = tokenizerFor(model).encode(fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(0, 30000), { bos: true });
    expect(stream[0]).toBe(1);
    const r = await perplexityOfTokens(model, stream, { seqLen: 128, maxTokens: 1000, batchSeqs: 7 });
    expect(r.tokens).toBe(1000);
    expect(r.windows).toBe(7); // remainder 104 dropped
    expect(r.predicted).toBe(7 * 127);
    // The same windows scored by hand.
    const nll = await model.handle.evaluate({ tokens: stream.slice(0, 7 * 128), nSeqs: 7, seqLen: 128, batchSeqs: 7, output: 'nll' }).promise;
    const mean = nll.reduce((a, b) => a + b, 0) / nll.length;
    expect(r.meanNll).toBeCloseTo(mean, 10);
    const wanda = await perplexityOfTokens(model, stream, { seqLen: 128, maxTokens: 1000, batchSeqs: 7, normalization: 'wanda' });
    expect(wanda.meanNll).toBeCloseTo((mean * 7 * 127) / (7 * 128), 10);
    await expect(perplexityOfTokens(model, stream.subarray(0, 100), { seqLen: 128 })).rejects.toMatchObject({ code: 'EP_INVALID_ARGUMENT' });
  });
});

describe('evaluation on CUDA', () => {
  // The GPU's numbers are checked by test:gpu (native/tests/test_cuda.cpp: loss per position and span scores
  // against the CPU); here: the routing, and a clean refusal where CUDA cannot run.
  it('eval resolves to the GPU where one runs, and a CUDA request without one is refused naming why', async () => {
    const probe = cudaInfo();
    const d = resolveDevice('auto', 'evaluation');
    const model = await loadModel(dataFile(STORIES_GGUF));
    const stream = new Int32Array(Array.from({ length: 4 * 64 }, (_, i) => (i * 11) % 500));
    const cpu = await perplexityOfTokens(model, stream, { seqLen: 64 });
    if (!probe.available) {
      expect(d).toEqual({ device: 'cpu', note: probe.message });
      await expect(perplexityOfTokens(model, stream, { seqLen: 64, cudaDevices: [0] })).rejects.toMatchObject({
        code: 'EP_UNSUPPORTED',
        message: expect.stringMatching(/CUDA requested, but/),
      });
      await expect(scoreEncoded(model, [{ tokens: stream.subarray(0, 20), target: 10 }], { cudaDevices: [0] })).rejects.toMatchObject({
        code: 'EP_UNSUPPORTED',
        message: expect.stringMatching(/CUDA requested, but/),
      });
    } else {
      expect(d.device).toBe('cuda');
      expect(d.note).toMatch(/^evaluation on cuda:/);
      const gpu = await perplexityOfTokens(model, stream, { seqLen: 64, cudaDevices: d.indices });
      expect(gpu.predicted).toBe(cpu.predicted);
      expect(Math.abs(gpu.meanNll - cpu.meanNll) / cpu.meanNll).toBeLessThan(0.02);  // bfloat16 products
    }
    expect(cpu.predicted).toBe(4 * 63);
    expect(cpu.ppl).toBeGreaterThan(1);
  });
});

describe('stream prefix encoding', () => {
  it('--max-tokens encodes only a prefix yet returns exactly the first tokens of the full encoding', async () => {
    const { encodeStreamPrefix } = await import('../lib/evaluate/perplexity');
    const { loadTokenizerFile } = await import('../lib');
    const text = fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(0, 120_000);
    for (const file of [`${TINY_HF}/tokenizer.json`, 'models/stories260K/tok512.bin']) {
      const tok = loadTokenizerFile(dataFile(file));
      const full = tok.encode(text, { bos: true });
      for (const n of [100, 3000, 9000]) expect(Array.from(await encodeStreamPrefix(tok, text, n))).toEqual(Array.from(full.subarray(0, n)));
    }
  });
});

describe('windows beyond the trained context', () => {
  it('are named in a warning (flag, length, model, context); within it, or with the context unknown, nothing', () => {
    const info = { context: 256, path: 'baby.bin' };
    expect(beyondContextWarning(info, 512, '--eval-seq-len')).toBe(
      "--eval-seq-len 512 is beyond baby.bin's trained context of 256 tokens: its positions past that were never trained, and what is measured there means little",
    );
    expect(beyondContextWarning(info, 256, '--seq-len')).toBeUndefined();
    expect(beyondContextWarning(info, undefined, '--seq-len')).toBeUndefined();
    expect(beyondContextWarning(info, 0, '--eval-seq-len')).toBeUndefined(); // compare's "default"
    expect(beyondContextWarning({ context: 0, path: 'x' }, 4096, '--seq-len')).toBeUndefined();
  });

  it('compare warns before its work starts (here it then stops at a missing calibration file)', async () => {
    const warnings: string[] = [];
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ep-ctx-'));
    try {
      const run = compare(
        {
          model: dataFile(STORIES_BIN), calib: path.join(out, 'missing.txt'), samples: 4, calibSeqLen: 1024, seed: 0, evalTexts: [dataFile(TINYSTORIES_TEXT)],
          evalSeqLen: 600, tasks: [], ratios: [0.3], methods: ['uniform'], speedSeqLen: 0,
        },
        { out, onWarning: (m) => warnings.push(m) },
      );
      await expect(run).rejects.toThrow(/missing\.txt/);
      expect(warnings).toEqual([expect.stringMatching(/^--seq-len 1024 is beyond .*stories260K\.bin's trained context of 512 tokens/), expect.stringMatching(/^--eval-seq-len 600 is beyond/)]);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
