// Apply and save on the real models: each removal kind, sliced vs zeroed in entroprune's engine and the
// written GGUF in llama.cpp (node-llama-cpp); round trips through every output format; atomic, safe writes.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { analyzeToFile, applyPlan, checkPlan, loadModel, plan, prunedShapes, readAnalysis, tokenizerFor, type Model, type PruningPlan } from '../lib';
import { native } from '../lib/native';
import { llamaCppLogits, llamaPeerScript } from '../lib/verify/verify';
import { runCli } from './helpers/cli';
import { dataFile, STORIES_BIN, STORIES_GGUF, tempDir, TINY_HF, TINYSTORIES_TEXT } from './helpers/data';

const scratch = tempDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

let stories: Model;
let storiesPlan: PruningPlan;
const analysisFile = path.join(scratch, 'stories.analysis.json');

beforeAll(async () => {
  stories = await loadModel(dataFile(STORIES_GGUF));
  await analyzeToFile(stories, analysisFile, { calib: dataFile('text/wikitext-2-raw/wiki.valid.raw'), tokenizer: tokenizerFor(stories), samples: 16, seqLen: 128 });
  storiesPlan = plan(readAnalysis(analysisFile).analysis, { ratio: 0.3, analysisFile });
});

function fullPlan(): PruningPlan {
  const p = JSON.parse(JSON.stringify(storiesPlan)) as PruningPlan;
  p.blocks.forEach((b, l) => {
    const s = p.model.layers[l];
    b.removed = false;
    b.attention = { removed: false, keptKvHeads: [...Array(s.nKvHead).keys()], keptHeads: [...Array(s.nHead).keys()] };
    b.mlp = { removed: false, keptChannels: [...Array(s.ffn).keys()] };
  });
  return p;
}

async function logitsOf(file: string, seqs: number[][]): Promise<Float32Array[]> {
  const m = await loadModel(file);
  const out = [];
  for (const s of seqs) out.push(await m.handle.evaluate({ tokens: Int32Array.from(s), nSeqs: 1, seqLen: s.length, output: 'logits' }).promise);
  return out;
}

const maxDiff = (a: Float32Array[], b: Float32Array) => {
  let d = 0;
  let off = 0;
  for (const x of a) {
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - b[off + i]));
    off += x.length;
  }
  return d;
};

describe('each removal kind: sliced = zeroed (engine) and GGUF agrees with llama.cpp', () => {
  const kinds: [string, (p: PruningPlan) => void][] = [
    ['query heads', (p) => { p.blocks[1].attention.keptHeads = [0, 3, 5, 6]; }],
    ['KV groups', (p) => { p.blocks[2].attention = { removed: false, keptKvHeads: [1, 3], keptHeads: [2, 3, 6, 7] }; }],
    ['MLP channels', (p) => { p.blocks[0].mlp.keptChannels = p.blocks[0].mlp.keptChannels.filter((j) => j % 3 !== 0); }],
    ['attention layer', (p) => { p.blocks[3].attention = { removed: true, keptKvHeads: [], keptHeads: [] }; }],
    ['attention layer of block 0', (p) => { p.blocks[0].attention = { removed: true, keptKvHeads: [], keptHeads: [] }; }],
    ['MLP layer', (p) => { p.blocks[2].mlp = { removed: true, keptChannels: [] }; }],
    ['MLP layer of the last block', (p) => { p.blocks[4].mlp = { removed: true, keptChannels: [] }; }],
    ['whole block', (p) => { p.blocks[2] = { ...p.blocks[2], removed: true, attention: { removed: true, keptKvHeads: [], keptHeads: [] }, mlp: { removed: true, keptChannels: [] } }; }],
    ['whole block 0', (p) => { p.blocks[0] = { ...p.blocks[0], removed: true, attention: { removed: true, keptKvHeads: [], keptHeads: [] }, mlp: { removed: true, keptChannels: [] } }; }],
    ['uniform width (llama arch)', (p) => { for (const b of p.blocks) b.mlp.keptChannels = b.mlp.keptChannels.slice(0, 128); }],
    ['attention of block 3 removed after block 2 lost its MLP', (p) => { p.blocks[2].mlp = { removed: true, keptChannels: [] }; p.blocks[3].attention = { removed: true, keptKvHeads: [], keptHeads: [] }; }],
    ['attention of block 3 removed, block 2 removed whole without compensation (the bias skips it)', (p) => {
      p.blocks[2] = { ...p.blocks[2], removed: true, compensate: false, attention: { removed: true, keptKvHeads: [], keptHeads: [] }, mlp: { removed: true, keptChannels: [] } };
      p.blocks[3].attention = { removed: true, keptKvHeads: [], keptHeads: [] };
    }],
    ['MLP of block 1 and attention of block 0 removed, block 1 attention-free after block 0 lost its attention', (p) => {
      p.blocks[0].attention = { removed: true, keptKvHeads: [], keptHeads: [] };
      p.blocks[1].attention = { removed: true, keptKvHeads: [], keptHeads: [] };
      p.blocks[1].mlp.keptChannels = p.blocks[1].mlp.keptChannels.slice(0, 100);
    }],
  ];
  for (const [name, edit] of kinds) {
    it(name, async () => {
      const p = fullPlan();
      edit(p);
      checkPlan(p);
      const sliced = path.join(scratch, `${name.replace(/\W+/g, '-')}.gguf`);
      const zeroed = path.join(scratch, `${name.replace(/\W+/g, '-')}.zero.gguf`);
      await applyPlan(stories, p, { output: sliced });
      await applyPlan(stories, p, { output: zeroed, zeroInsteadOfSlice: true });
      // The compensation routing as the plan's accounting models it (compensationBiases) is what apply wrote.
      const written = (await loadModel(sliced)).info.layers.map((l) => ({ attnOut: l.attnOutBias, ffnDown: l.ffnDownBias }));
      const modelled = prunedShapes(p).filter((_, l) => !p.blocks[l].removed).map((s) => ({ attnOut: s.attnOutBias ?? false, ffnDown: s.ffnDownBias ?? false }));
      expect(written, 'biases per kept block').toEqual(modelled);
      const tok = tokenizerFor(stories);
      const seq = Array.from(tok.encode(fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(0, 3000), { bos: true }).subarray(0, 96));
      const a = await logitsOf(sliced, [seq]);
      const b = await logitsOf(zeroed, [seq]);
      expect(maxDiff(a, b[0]), 'sliced vs zeroed').toBeLessThan(1e-4);
      const script = llamaPeerScript();
      expect(script, 'node-llama-cpp must be installed in test/peer (.ci/run does it)').toBeDefined();
      const theirs = llamaCppLogits(script!, sliced, [seq]);
      const d = maxDiff(a, theirs);
      console.log(`${name}: engine vs llama.cpp max |Δlogit| ${d.toExponential(2)}`);
      expect(d).toBeLessThan(5e-4);
    });
  }
});

describe('round trips', () => {
  it('HF → prune (uniform) → HF → load: a stock Llama config, logits of the zeroed model', async () => {
    const model = await loadModel(dataFile(TINY_HF));
    const af = path.join(scratch, 'tiny.analysis.json');
    await analyzeToFile(model, af, { calib: dataFile(TINYSTORIES_TEXT), tokenizer: tokenizerFor(model), samples: 8, seqLen: 128 });
    const p = plan(readAnalysis(af).analysis, { ratio: 0.3, uniformShape: true, analysisFile: af, align: 8 });
    const out = path.join(scratch, 'tiny-pruned');
    const zero = path.join(scratch, 'tiny-zero');
    await applyPlan(model, p, { output: out, format: 'hf' });
    await applyPlan(model, p, { output: zero, format: 'hf', zeroInsteadOfSlice: true });
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(cfg.architectures).toEqual(['LlamaForCausalLM']);
    expect(cfg.intermediate_size).toBe(p.blocks[0].mlp.keptChannels.length);
    // numbers as the source wrote them, not widened from float32 (9.999999974752427e-07)
    const source = JSON.parse(fs.readFileSync(path.join(dataFile(TINY_HF), 'config.json'), 'utf8'));
    expect(cfg.rms_norm_eps).toBe(source.rms_norm_eps);
    expect(cfg.rope_theta).toBe(source.rope_theta);
    expect(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).toMatch(/"rms_norm_eps": 1e-06/);
    expect(fs.existsSync(path.join(out, 'tokenizer.json'))).toBe(true);
    const seq = Array.from({ length: 64 }, (_, i) => (i * 31 + 1) % 2048);
    const a = await logitsOf(out, [seq]);
    const b = await logitsOf(zero, [seq]);
    expect(maxDiff(a, b[0])).toBeLessThan(1e-4);
  });

  it('llama2.c → prune (width) → GGUF with the tok512 vocab embedded, run by llama.cpp', async () => {
    const model = await loadModel(dataFile(STORIES_BIN));
    const af = path.join(scratch, 'bin.analysis.json');
    await analyzeToFile(model, af, { calib: dataFile(TINYSTORIES_TEXT), tokenizer: tokenizerFor(model), samples: 8, seqLen: 128 });
    const wp = plan(readAnalysis(af).analysis, { ratio: 0.25, granularity: 'width-only', analysisFile: af });
    const out = path.join(scratch, 'from-bin.gguf');
    await applyPlan(model, wp, { output: out, vocabFile: dataFile('models/stories260K/tok512.bin') });
    const back = await loadModel(out);
    expect(back.info.hasEmbeddedVocab).toBe(true);
    const seq = Array.from(tokenizerFor(back).encode('Once upon a time there was a cat.', { bos: true }));
    expect(seq).toEqual(Array.from(tokenizerFor(model).encode('Once upon a time there was a cat.', { bos: true })));
    const ours = await logitsOf(out, [seq]);
    const theirs = llamaCppLogits(llamaPeerScript()!, out, [seq]);
    expect(maxDiff(ours, theirs)).toBeLessThan(5e-4);
  });
});

describe('Nemotron-NAS (DeciLMForCausalLM) output', () => {
  it('a heterogeneous plan with whole attention layers and 256-multiple MLP widths → block_configs → read back: same logits as its GGUF', async () => {
    const src = path.join(scratch, 'nas-src.gguf');
    native().writeSyntheticGguf({ dim: 64, vocab: 512, headDim: 16, layers: Array.from({ length: 4 }, () => ({ nHead: 4, nKvHead: 2, ffn: 768 })), seed: 9 }, src);
    const model = await loadModel(src);
    const af = path.join(scratch, 'nas.analysis.json');
    await analyzeToFile(model, af, { calib: dataFile('text/wikitext-2-raw/wiki.valid.raw'), tokenizer: tokenizerFor(model), samples: 8, seqLen: 64 });
    const p = plan(readAnalysis(af).analysis, { ratio: 0.4, align: 256, alignHeads: 4, analysisFile: af });
    const shapes = p.blocks.filter((b) => !b.removed).map((b) => [b.attention.keptHeads.length, b.mlp.keptChannels.length]);
    expect(new Set(shapes.map((s) => JSON.stringify(s))).size).toBeGreaterThan(1); // really heterogeneous
    for (const [h, f] of shapes) {
      expect([0, 4]).toContain(h);
      expect(f % 256).toBe(0);
    }
    const hf = path.join(scratch, 'nas-hf');
    const gguf = path.join(scratch, 'nas.gguf');
    await applyPlan(model, p, { output: hf, format: 'hf' });
    await applyPlan(model, p, { output: gguf });
    const cfg = JSON.parse(fs.readFileSync(path.join(hf, 'config.json'), 'utf8'));
    expect(cfg.architectures).toEqual(['DeciLMForCausalLM']);
    expect(cfg.num_attention_heads).toBe(4);
    expect(cfg.block_configs).toHaveLength(shapes.length);
    cfg.block_configs.forEach((bc: { attention: { no_op: boolean; n_heads_in_group: number | null }; ffn: { no_op: boolean; ffn_mult: number | null } }, i: number) => {
      expect(bc.attention.no_op).toBe(shapes[i][0] === 0);
      expect(bc.ffn.no_op).toBe(shapes[i][1] === 0);
      if (!bc.ffn.no_op) expect(Math.ceil(Math.trunc((2 * bc.ffn.ffn_mult! * 64) / 3) / 256) * 256).toBe(shapes[i][1]); // the reference formula
    });
    const back = await loadModel(hf);
    expect(back.info.layers.map((l) => [l.nHead, l.ffn])).toEqual(shapes);
    const seq = Array.from({ length: 48 }, (_, i) => (i * 37 + 5) % 512);
    const a = await logitsOf(hf, [seq]);
    const b = await logitsOf(gguf, [seq]);
    expect(maxDiff(a, b[0])).toBeLessThan(1e-4);
  });

  it('a plan the layout cannot hold is refused with the options that fit', async () => {
    const model = await loadModel(path.join(scratch, 'nas-src.gguf'));
    const af = path.join(scratch, 'nas.analysis.json');
    const p = plan(readAnalysis(af).analysis, { ratio: 0.4, analysisFile: af });
    const out = path.join(scratch, 'nas-refused');
    await expect(applyPlan(model, p, { output: out, format: 'hf' })).rejects.toThrow(/Nemotron-NAS \(DeciLMForCausalLM\) layout cannot hold it: block \d+ .*--align 256 --align-heads/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('llama2.c output', () => {
  it('llama2.c → prune (uniform width, whole blocks, no compensation) → llama2.c: same logits as the GGUF of that plan; other plans refused', async () => {
    const model = await loadModel(dataFile(STORIES_BIN));
    const af = path.join(scratch, 'l2c.analysis.json');
    await analyzeToFile(model, af, { calib: dataFile(TINYSTORIES_TEXT), tokenizer: tokenizerFor(model), samples: 8, seqLen: 128 });
    const wp = plan(readAnalysis(af).analysis, { ratio: 0.3, granularity: 'width-only', uniformShape: true, compensation: false, analysisFile: af });
    // keep every query head (llama2.c's q is dim × dim) and drop one whole block as well
    wp.blocks.forEach((b, l) => {
      b.attention = { removed: false, keptKvHeads: [...Array(wp.model.layers[l].nKvHead).keys()], keptHeads: [...Array(wp.model.layers[l].nHead).keys()] };
    });
    wp.blocks[3].removed = true;
    wp.blocks[3].attention.removed = true;
    wp.blocks[3].mlp.removed = true;
    const bin = path.join(scratch, 'pruned.bin');
    const gguf = path.join(scratch, 'pruned-ref.gguf');
    const r = await applyPlan(model, wp, { output: bin });
    expect(r.format).toBe('llama2c');
    await applyPlan(model, wp, { output: gguf });
    const back = await loadModel(bin);
    expect(back.info.format).toBe('llama2c');
    expect(back.info.layers).toHaveLength(4);
    const width = wp.blocks[0].mlp.keptChannels.length;
    expect(back.info.layers.every((s) => s.ffn === width && s.nHead === 8 && s.nKvHead === 4)).toBe(true);
    expect(width).toBeLessThan(172);
    // loading ran the checkpoint's exact size check (28 + floats × 4 bytes); logits match the GGUF of the same plan
    const seq = Array.from(tokenizerFor(model).encode('Once upon a time there was a cat.', { bos: true }));
    const a = await logitsOf(bin, [seq]);
    const b = await logitsOf(gguf, [seq]);
    expect(maxDiff(a, b[0])).toBeLessThan(1e-5);
    // compensation biases and per-block widths have no place in the format
    const het = plan(readAnalysis(af).analysis, { ratio: 0.3, analysisFile: af });
    await expect(applyPlan(model, het, { output: path.join(scratch, 'het.bin') })).rejects.toThrow(/llama2\.c checkpoint cannot hold this plan: .*--granularity width-only --uniform --no-compensation/);
    expect(fs.existsSync(path.join(scratch, 'het.bin'))).toBe(false);
  });
});

describe('Hugging Face source → GGUF', () => {
  it('tokenizer.json converts to an embedded SentencePiece vocabulary that encodes real text identically; llama.cpp runs the heterogeneous result', async () => {
    const model = await loadModel(dataFile(TINY_HF));
    const af = path.join(scratch, 'tiny-gguf.analysis.json');
    await analyzeToFile(model, af, { calib: dataFile(TINYSTORIES_TEXT), tokenizer: tokenizerFor(model), samples: 8, seqLen: 128 });
    const p = plan(readAnalysis(af).analysis, { ratio: 0.3, granularity: 'width-only', analysisFile: af });
    const out = path.join(scratch, 'tiny-from-hf.gguf');
    await applyPlan(model, p, { output: out });
    const back = await loadModel(out);
    expect(back.info.hasEmbeddedVocab).toBe(true);
    const embedded = tokenizerFor(back);
    expect(embedded.kind).toBe('gguf');
    for (const file of [TINYSTORIES_TEXT, 'text/wikitext-2-raw/wiki.valid.raw']) {
      const text = fs.readFileSync(dataFile(file), 'utf8').slice(0, 60_000);
      expect(Array.from(embedded.encode(text, { bos: true })), file).toEqual(Array.from(tokenizerFor(model).encode(text, { bos: true })));
    }
    const seq = Array.from(embedded.encode('Once upon a time, there was a little dog named Max.', { bos: true }));
    const ours = await logitsOf(out, [seq]);
    const theirs = llamaCppLogits(llamaPeerScript()!, out, [seq]);
    expect(maxDiff(ours, theirs)).toBeLessThan(5e-4);
  });

  it('a tokenizer with no SentencePiece equivalent is refused, naming the file', async () => {
    const model = await loadModel(dataFile(TINY_HF));
    const dir = path.join(scratch, 'bytelevel-tok');
    fs.mkdirSync(dir, { recursive: true });
    const tj = JSON.parse(fs.readFileSync(path.join(dataFile(TINY_HF), 'tokenizer.json'), 'utf8'));
    tj.normalizer = null;
    tj.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tj));
    const af = path.join(scratch, 'tiny-gguf.analysis.json');
    const p = plan(readAnalysis(af).analysis, { ratio: 0.3, granularity: 'width-only', analysisFile: af });
    const out = path.join(scratch, 'refused.gguf');
    await expect(applyPlan(model, p, { output: out, tokenizerJson: path.join(dir, 'tokenizer.json') })).rejects.toThrow(/bytelevel-tok\/tokenizer\.json: this tokenizer .*ByteLevel pre-tokenizer.*--format hf/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('safe writes', () => {
  it('refuses to overwrite without --force, never touches the input, leaves no temporary files', async () => {
    const input = dataFile(STORIES_GGUF);
    const hash = () => createHash('sha256').update(fs.readFileSync(input)).digest('hex');
    const before = hash();
    const planFile = path.join(scratch, 'p.json');
    fs.writeFileSync(planFile, JSON.stringify(storiesPlan));
    const out = path.join(scratch, 'cli.gguf');
    fs.writeFileSync(out, 'precious');
    const r = runCli(['apply', input, planFile, '-o', out, '--no-verify']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cli\.gguf: already exists \(pass --force/);
    expect(fs.readFileSync(out, 'utf8')).toBe('precious');
    const ok = runCli(['apply', input, planFile, '-o', out, '--force', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    const j = JSON.parse(ok.stdout);
    expect(j.verify.map((v: { status: string }) => v.status)).not.toContain('fail');
    expect(hash()).toBe(before);
    expect(fs.readdirSync(scratch).filter((f) => f.includes('.tmp-'))).toEqual([]);
    expect(runCli(['apply', input, planFile, '-o', input, '--force']).stderr).toMatch(/overwrite the input/);
  });

  it('refuses a plan made for another model', async () => {
    const planFile = path.join(scratch, 'other.json');
    fs.writeFileSync(planFile, JSON.stringify(storiesPlan));
    const r = runCli(['apply', dataFile(STORIES_BIN), planFile, '-o', path.join(scratch, 'x.gguf')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/plan was made for another model/);
  });
});
