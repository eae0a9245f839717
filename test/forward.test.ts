// The engine's forward pass through the Node API: against an independent float64 reference (TinyStories-656K,
// HF layout), the documented anchors of stories260K, and the async worker's behaviour.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadModel, tokenizerFor } from '../lib';
import { native } from '../lib/native';
import { awaitNativeJob } from '../lib/util/native-job';
import { dataFile, STORIES_GGUF, tempDir, TINY_HF, TINYSTORIES_TEXT } from './helpers/data';
import { HfLlamaReference } from './reference/hf-llama-reference';

/** A copy of TinyStories-656K whose config.json has `over` merged in. */
function variantOf(name: string, over: object): string {
  const src = dataFile(TINY_HF);
  const dir = path.join(tempDir(), name);
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  fs.chmodSync(path.join(dir, 'config.json'), 0o644);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, ...over }));
  return dir;
}

/** The largest |reference − engine| over the positions' logits. */
function maxLogitDiff(ref: Float64Array[], logits: Float32Array, positions: number, V: number): number {
  let m = 0;
  for (let t = 0; t < positions; t++) for (let j = 0; j < V; j++) m = Math.max(m, Math.abs(ref[t][j] - logits[t * V + j]));
  return m;
}

describe('forward pass', () => {
  it('TinyStories-656K logits agree with an independent float64 reference on 96 positions of real text', async () => {
    const dir = dataFile(TINY_HF);
    const model = await loadModel(dir);
    const tok = tokenizerFor(model);
    const text = fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(0, 2000);
    const ids = Array.from(tok.encode(text, { bos: true }).subarray(0, 96));
    expect(ids.length).toBe(96);
    const logits = await model.handle.evaluate({ tokens: Int32Array.from(ids), nSeqs: 1, seqLen: ids.length, output: 'logits' }).promise;
    const ref = new HfLlamaReference(dir).logits(ids);
    const maxDiff = maxLogitDiff(ref, logits, ids.length, model.info.vocab);
    console.log(`TinyStories-656K: max |logit - float64 reference| over ${ids.length} positions = ${maxDiff.toExponential(3)}`);
    expect(maxDiff).toBeLessThan(1e-3);
  });

  it('settings that differ from the bundled models (RoPE theta 500,000, RMSNorm eps 0.05) are read and used: each, ignored, would fail', async () => {
    // A copy of TinyStories-656K with other settings in config.json; the engine and the float64 reference
    // both read them. The same reference with the old values shows how far off an engine that ignored them
    // would be: far beyond the tolerance.
    const cfg = JSON.parse(fs.readFileSync(path.join(dataFile(TINY_HF), 'config.json'), 'utf8'));
    const base = { rope_theta: cfg.rope_theta ?? 10000, rms_norm_eps: cfg.rms_norm_eps };
    const dir = variantOf('variant', { rope_theta: 500000, rms_norm_eps: 0.05 });
    const model = await loadModel(dir);
    expect(model.info.ropeTheta).toBe(500000);
    const tok = tokenizerFor(model);
    const ids = Array.from(tok.encode(fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(0, 2000), { bos: true }).subarray(0, 64));
    const logits = await model.handle.evaluate({ tokens: Int32Array.from(ids), nSeqs: 1, seqLen: ids.length, output: 'logits' }).promise;
    const diff = (ref: Float64Array[]) => maxLogitDiff(ref, logits, ids.length, model.info.vocab);
    const reference = new HfLlamaReference(dir);
    const agree = diff(reference.logits(ids));
    const withCfg = (over: object) => {
      const r = new HfLlamaReference(dir);
      Object.assign(r.cfg, over);
      return diff(r.logits(ids));
    };
    const thetaIgnored = withCfg({ rope_theta: base.rope_theta });
    const epsIgnored = withCfg({ rms_norm_eps: base.rms_norm_eps });
    console.log(`theta 500000, eps 0.05: engine vs reference ${agree.toExponential(2)}; an engine ignoring theta would be off by ${thetaIgnored.toExponential(2)}, ignoring eps by ${epsIgnored.toExponential(2)}`);
    expect(agree).toBeLessThan(1e-3);
    expect(thetaIgnored).toBeGreaterThan(1e-2);
    expect(epsIgnored).toBeGreaterThan(1e-2);
  });

  it('Llama-3 RoPE scaling (theta 500,000, factor 8 beyond an original context of 64) is read and used: ignored, it would fail', async () => {
    // TinyStories-656K with Llama 3.1's rope_scaling in config.json; the float64 reference implements the
    // rule on its own. The original context is set short so that a 16-wide head has a frequency of each kind:
    // wavelength 6.3 kept (< 64/4), 32.4 blended, 167 and beyond stretched.
    const dir = variantOf('llama3-rope', { rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } });
    const model = await loadModel(dir);
    expect(model.info.ropeScaling).toBe('llama3');
    const ids = Array.from(tokenizerFor(model).encode(fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(0, 2000), { bos: true }).subarray(0, 64));
    const logits = await model.handle.evaluate({ tokens: Int32Array.from(ids), nSeqs: 1, seqLen: ids.length, output: 'logits' }).promise;
    const diff = (ref: Float64Array[]) => maxLogitDiff(ref, logits, ids.length, model.info.vocab);
    const agree = diff(new HfLlamaReference(dir).logits(ids));
    const unscaled = new HfLlamaReference(dir);
    unscaled.cfg.rope_scaling = null;
    const ignored = diff(unscaled.logits(ids));
    console.log(`llama3 RoPE scaling: engine vs reference ${agree.toExponential(2)}; an engine ignoring the scaling would be off by ${ignored.toExponential(2)}`);
    expect(agree).toBeLessThan(1e-3);
    expect(ignored).toBeGreaterThan(1e-2);
  });

  it('stories260K: first step after BOS matches the documented float64 reference', async () => {
    const model = await loadModel(dataFile(STORIES_GGUF));
    const logits = await model.handle.evaluate({ tokens: Int32Array.from([1]), nSeqs: 1, seqLen: 1, output: 'logits' }).promise;
    const top = logits.indexOf(Math.max(...logits));
    expect(top).toBe(403);
    expect(logits[403]).toBeCloseTo(17.0235, 3);
    expect(logits[385]).toBeCloseTo(15.4062, 3);
  });

  it('runs off the main thread, reports progress and can be cancelled', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'synthetic.gguf');
    native().writeSyntheticGguf(
      { dim: 256, vocab: 512, headDim: 32, layers: Array.from({ length: 6 }, () => ({ nHead: 8, nKvHead: 4, ffn: 768 })), seed: 3 },
      file,
    );
    const model = await loadModel(file);
    const seqLen = 256;
    const nSeqs = 24;
    const tokens = Int32Array.from({ length: nSeqs * seqLen }, (_, i) => (i * 7919) % 512);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const progress: number[] = [];
    const nll = await model.handle.evaluate({ tokens, nSeqs, seqLen, batchSeqs: 4, output: 'nll' }, (done) => progress.push(done)).promise;
    clearInterval(timer);
    expect(nll.length).toBe(nSeqs * (seqLen - 1));
    expect(ticks).toBeGreaterThan(2); // the event loop kept running during the native work
    expect(progress.at(-1)).toBe(nSeqs);
    expect(progress.length).toBeGreaterThanOrEqual(2);

    const job = model.handle.evaluate({ tokens, nSeqs, seqLen, batchSeqs: 1, output: 'nll' });
    job.cancel();
    await expect(job.promise).rejects.toMatchObject({ code: 'EP_CANCELLED' });
    // through the API an abort rejects with the caller's reason kept (as the cause, and in the message)
    const controller = new AbortController();
    const reason = new Error('stop requested by the pipeline');
    const pending = awaitNativeJob(model.handle.evaluate({ tokens, nSeqs, seqLen, batchSeqs: 1, output: 'nll' }), controller.signal);
    controller.abort(reason);
    await expect(pending).rejects.toMatchObject({ code: 'EP_CANCELLED', cause: reason, message: expect.stringMatching(/stop requested by the pipeline/) });
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
