// The bad-input corpus: ≥ 30 broken models, tokenizers, texts, plans and output paths, generated from the
// shared data's real files (nothing binary is committed). Each case says how to run entroprune on it and
// what a good refusal looks like: a non-zero exit, a message naming the file and the problem, inputs left
// unchanged, no output and no temporary file left behind.
//
//   node test/bad-inputs/make-corpus.mjs <dir>    # writes the corpus and <dir>/cases.json
//   import { makeCorpus } from './make-corpus.mjs' # used by test/bad-inputs.test.ts
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { writeBf16Safetensors } from '../helpers/bf16-safetensors.mjs';

/** Where each scalar metadata value of a GGUF file (v2/v3) lives: key -> { type, at }. */
export function ggufValues(buf) {
  let p = 8;
  const u64 = () => { const v = Number(buf.readBigUInt64LE(p)); p += 8; return v; };
  u64();
  const nKv = u64();
  const str = () => { const n = u64(); const s = buf.toString('utf8', p, p + n); p += n; return s; };
  const sizes = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const out = {};
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = buf.readUInt32LE(p);
    p += 4;
    out[key] = { type, at: p };
    if (type === 8) str();
    else if (type === 9) { const et = buf.readUInt32LE(p); p += 4; const n = u64(); for (let j = 0; j < n; j++) { if (et === 8) str(); else p += sizes[et]; } }
    else p += sizes[type];
  }
  return out;
}

/** Byte offsets inside a GGUF file (v2/v3): where each tensor's info fields live. */
export function ggufLayout(buf) {
  let p = 0;
  const u32 = () => { const v = buf.readUInt32LE(p); p += 4; return v; };
  const u64 = () => { const v = Number(buf.readBigUInt64LE(p)); p += 8; return v; };
  const str = () => { const n = u64(); const s = buf.toString('utf8', p, p + n); p += n; return s; };
  const sizes = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skip = (t) => {
    if (t === 8) str();
    else if (t === 9) { const et = u32(); const n = u64(); for (let i = 0; i < n; i++) skip(et); }
    else p += sizes[t];
  };
  p = 4;
  const version = u32();
  const countsAt = p;
  const nTensors = u64(), nKv = u64();
  for (let i = 0; i < nKv; i++) { str(); skip(u32()); }
  const tensors = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nDimsAt = p;
    const nd = u32();
    const dimsAt = p;
    p += 8 * nd;
    const typeAt = p;
    p += 4;
    const offsetAt = p;
    p += 8;
    tensors.push({ name, nDimsAt, dimsAt, typeAt, offsetAt, offset: Number(buf.readBigUInt64LE(offsetAt)) });
  }
  const dataStart = Math.ceil(p / 32) * 32; // general.alignment is 32 in every file used here
  return { version, countsAt, tensors, dataStart };
}

function safetensorsFile(entries, data) {
  const header = Buffer.from(JSON.stringify(entries));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([len, header, data]);
}

/**
 * Writes the corpus into `dir` from the shared data folder `data`. Returns the cases:
 * {name, args, expect: RegExp source, code: 1|2, inputs: [files that must stay as they are], outputs: [paths that must not appear]}.
 */
export function makeCorpus(dir, data) {
  fs.mkdirSync(dir, { recursive: true });
  const at = (...p) => path.join(dir, ...p);
  const D = (...p) => path.join(data, ...p);
  const gguf = fs.readFileSync(D('models', 'stories260K', 'stories260K.gguf'));
  const bin = fs.readFileSync(D('models', 'stories260K', 'stories260K.bin'));
  const hfDir = D('models', 'tinystories-656K');
  const calib = D('text', 'tinystories', 'tinystories_validation_head.txt');
  const cases = [];
  const info2Later = []; // config.json edits, added once the HF helpers below exist
  const write = (name, bytes) => { fs.writeFileSync(at(name), bytes); return at(name); };
  const patch = (src, edits) => { const b = Buffer.from(src); for (const [off, fn] of edits) fn(b, off); return b; };
  const info = (name, file, expect) => cases.push({ name, args: ['info', file], expect, code: 1, inputs: [file], outputs: [] });
  const layout = ggufLayout(gguf);
  const t0 = layout.tensors[0], t5 = layout.tensors[5];

  // ---- GGUF
  info('gguf: cut inside the header', write('cut-header.gguf', gguf.subarray(0, 10)), 'cut-header\\.gguf.*(outside|truncated|header)');
  info('gguf: cut inside the tensor data', write('cut-data.gguf', gguf.subarray(0, Math.floor(gguf.length * 0.6))), 'cut-data\\.gguf.*(outside|truncated|extends)');
  info('gguf: bad magic', write('magic.gguf', patch(gguf, [[0, (b) => b.write('GGUX', 0)]])), 'magic\\.gguf.*not a GGUF file');
  info('gguf: unsupported version', write('version.gguf', patch(gguf, [[4, (b) => b.writeUInt32LE(99, 4)]])), 'version\\.gguf.*version 99 is not supported');
  info('gguf: tensor count larger than the file can hold', write('count.gguf', patch(gguf, [[layout.countsAt, (b, o) => b.writeBigUInt64LE(1n << 40n, o)]])), 'count\\.gguf.*claims');
  info('gguf: metadata count larger than the file can hold', write('kvcount.gguf', patch(gguf, [[layout.countsAt + 8, (b, o) => b.writeBigUInt64LE(1n << 40n, o)]])), 'kvcount\\.gguf.*claims');
  info('gguf: tensor offset outside the file', write('offset.gguf', patch(gguf, [[t5.offsetAt, (b, o) => b.writeBigUInt64LE(1n << 33n, o)]])), `offset\\.gguf.*${t5.name.replace(/\./g, '\\.')}.*outside`);
  info('gguf: quantized tensor (Q4_0)', write('quant.gguf', patch(gguf, [[t0.typeAt, (b, o) => b.writeUInt32LE(2, o)]])), `quant\\.gguf.*Q4_0`);
  info('gguf: tensor shape that contradicts the config', write('shape.gguf', patch(gguf, [[t5.dimsAt, (b, o) => b.writeBigUInt64LE(BigInt(Number(b.readBigUInt64LE(o)) / 2), o)]])), 'shape\\.gguf.*(shape|size|expected|outside|offset)');
  const down2 = layout.tensors.find((t) => t.name === 'blk.2.ffn_down.weight');
  const nanFile = write('nan.gguf', patch(gguf, [[layout.dataStart + down2.offset + 4 * 37, (b, o) => b.writeFloatLE(NaN, o)]]));
  cases.push({ name: 'gguf: a NaN weight (named by analyze)', args: ['analyze', nanFile, '--calib', calib, '--samples', '4', '--seq-len', '64', '-o', at('nan.analysis.json')], expect: "nan\\.gguf: the activations became NaN or infinite in block 2: tensor 'blk\\.2\\.ffn_down\\.weight' holds NaN at element 37", code: 1, inputs: [nanFile], outputs: [at('nan.analysis.json')] });
  cases.push({ name: 'gguf: a NaN weight (perplexity refuses to print NaN)', args: ['eval', 'ppl', nanFile, '--text', calib, '--seq-len', '64', '--max-tokens', '256'], expect: 'nan\\.gguf: the loss is NaN or infinite', code: 1, inputs: [nanFile], outputs: [] });
  // A failed check reaches the exit code: verify prints `fail` rows for a model whose logits are NaN and
  // must exit 1 (the command once set process.exitCode = 1, which bin/entroprune.js then overwrote with 0).
  cases.push({ name: 'verify: fail rows reach the exit code (a NaN weight)', args: ['verify', nanFile, '--json'], expect: '', stdout: '"status":"fail"', code: 1, inputs: [nanFile], outputs: [] });
  // Identity, not spelling: the input reached through a symlinked folder is refused, --force or not.
  fs.mkdirSync(at('src'), { recursive: true });
  const srcModel = write(path.join('src', 'model.gguf'), gguf);
  if (!fs.existsSync(at('alias'))) fs.symlinkSync(at('src'), at('alias'));
  for (const force of [[], ['--force']])
    cases.push({ name: `output: the input reached through a symlinked folder${force.length ? ' (--force)' : ''}`, args: ['prune', srcModel, '--ratio', '0.3', '--calib', calib, '--samples', '4', '--seq-len', '64', '-o', at('alias', 'model.gguf'), ...force], expect: 'alias/model\\.gguf: the output is the input .*src/model\\.gguf', code: 1, inputs: [srcModel], outputs: [at('src', 'model.analysis.json'), at('src', 'model.plan.json')] });
  info('gguf: five dimensions', write('dims.gguf', patch(gguf, [[t0.nDimsAt, (b, o) => b.writeUInt32LE(5, o)]])), 'dims\\.gguf.*dimensions');

  // ---- GGUF metadata that contradicts the tensors or lies outside its range (each once ran with wrong numbers)
  const kv = ggufValues(gguf);
  const u32 = (key, v) => patch(gguf, [[kv[key].at, (b, o) => b.writeUInt32LE(v >>> 0, o)]]);
  info('gguf: head_count_kv 0 beside attention weights', write('kv0.gguf', u32('llama.attention.head_count_kv', 0)), 'kv0\\.gguf.*attention tensors but llama\\.attention\\.head_count_kv is 0');
  info('gguf: feed_forward_length 0 beside MLP weights', write('ffn0.gguf', u32('llama.feed_forward_length', 0)), 'ffn0\\.gguf.*MLP tensors but llama\\.feed_forward_length is 0');
  info('gguf: block_count 6 for 5 blocks of tensors', write('blocks6.gguf', u32('llama.block_count', 6)), 'blocks6\\.gguf.*block_count is 6 but block 5 has no');
  info('gguf: head_count 0', write('heads0.gguf', u32('llama.attention.head_count', 0)), 'heads0\\.gguf.*head_count is 0');
  info('gguf: context length -5', write('ctx.gguf', u32('llama.context_length', -5)), 'ctx\\.gguf.*context_length.*out of range');
  info('gguf: RMS epsilon 1e30', write('eps.gguf', patch(gguf, [[kv['llama.attention.layer_norm_rms_epsilon'].at, (b, o) => b.writeFloatLE(1e30, o)]])), 'eps\\.gguf.*epsilon must lie in');
  const tA = layout.tensors.find((t) => t.name === 'blk.0.attn_q.weight'), tB = layout.tensors.find((t) => t.name === 'blk.0.attn_k.weight');
  info('gguf: a duplicate tensor name', write('dup.gguf', patch(gguf, [[tB.nDimsAt - tB.name.length, (b, o) => b.write(tA.name, o)]])), "dup\\.gguf.*tensor 'blk\\.0\\.attn_q\\.weight' appears twice");
  info('gguf: overlapping tensors', write('overlap.gguf', patch(gguf, [[tB.offsetAt, (b, o) => b.writeBigUInt64LE(BigInt(tA.offset), o)]])), 'overlap\\.gguf.*overlap');

  // ---- inputs that are not regular files (a FIFO blocked forever; a folder printed a stack trace)
  const fifo = at('pipe');
  if (!fs.existsSync(fifo)) spawnSync('mkfifo', [fifo]);
  const storiesGguf = D('models', 'stories260K', 'stories260K.gguf');
  // (no inputs to checksum: reading the FIFO or the loop would block or fail in the harness itself)
  cases.push({ name: 'a FIFO as the model', args: ['info', fifo], expect: 'pipe: model: is a named pipe', code: 1, inputs: [], outputs: [] });
  cases.push({ name: 'a FIFO as the text', args: ['eval', 'ppl', storiesGguf, '--text', fifo], expect: 'pipe: text file: is a named pipe', code: 1, inputs: [storiesGguf], outputs: [] });
  cases.push({ name: 'a FIFO as the calibration file', args: ['analyze', storiesGguf, '--calib', fifo, '-o', at('fifo.analysis.json')], expect: 'pipe: calibration file: is a named pipe', code: 1, inputs: [storiesGguf], outputs: [at('fifo.analysis.json')] });
  cases.push({ name: 'a FIFO as the tokenizer', args: ['eval', 'ppl', storiesGguf, '--text', calib, '--tokenizer', fifo], expect: 'pipe: tokenizer file: is a named pipe', code: 1, inputs: [storiesGguf], outputs: [] });
  cases.push({ name: 'a folder as the calibration file', args: ['analyze', storiesGguf, '--calib', dir, '-o', at('dir.analysis.json')], expect: 'calibration file: is a folder', code: 1, inputs: [storiesGguf], outputs: [at('dir.analysis.json')] });
  cases.push({ name: 'a folder as the text', args: ['eval', 'ppl', storiesGguf, '--text', dir], expect: 'text file: is a folder', code: 1, inputs: [storiesGguf], outputs: [] });
  if (!fs.existsSync(at('loop-a'))) { fs.symlinkSync(at('loop-b'), at('loop-a')); fs.symlinkSync(at('loop-a'), at('loop-b')); }
  cases.push({ name: 'a symbolic link loop as the model', args: ['info', at('loop-a')], expect: 'loop-a: model: a symbolic link loop', code: 1, inputs: [], outputs: [] });
  cases.push({ name: 'an unparseable .json calibration file', args: ['analyze', storiesGguf, '--calib', write('bad-ids.json', '[1, 2,'), '-o', at('ids.analysis.json')], expect: 'bad-ids\\.json: a pre-tokenized \\.json calibration file must be one JSON array', code: 1, inputs: [storiesGguf], outputs: [at('ids.analysis.json')] });
  cases.push({ name: 'an empty .json calibration file', args: ['analyze', storiesGguf, '--calib', write('empty-ids.json', ''), '-o', at('ids2.analysis.json')], expect: 'empty-ids\\.json: a pre-tokenized', code: 1, inputs: [storiesGguf], outputs: [at('ids2.analysis.json')] });
  cases.push({ name: 'calibration ids at or beyond 2^31', args: ['analyze', storiesGguf, '--calib', write('big-ids.json', JSON.stringify([1, 4294967297, 3])), '-o', at('ids3.analysis.json')], expect: 'big-ids\\.json: a pre-tokenized', code: 1, inputs: [storiesGguf], outputs: [at('ids3.analysis.json')] });
  cases.push({ name: 'pre-tokenized ids given to eval ppl as text', args: ['eval', 'ppl', storiesGguf, '--text', write('ids.tokens', Buffer.alloc(4096))], expect: 'ids\\.tokens: eval ppl reads text', code: 1, inputs: [storiesGguf], outputs: [] });

  // ---- numbers from the command line, bounded before any work
  const an = (name, extra, expect) => cases.push({ name, args: ['analyze', storiesGguf, '--calib', calib, '-o', at(`${name.replace(/\W+/g, '-')}.json`), ...extra], expect, code: 1, inputs: [storiesGguf], outputs: [at(`${name.replace(/\W+/g, '-')}.json`)] });
  an('samples 1e9', ['--samples', '1000000000'], 'calibration tokens, more than');
  an('ridge 1e300', ['--ridge', '1e300'], 'ridge must lie in \\[0, 0\\.01\\]');
  an('seed beyond 32 bits', ['--seed', String(2 ** 40)], 'seed must be an integer in \\[0, 4294967295\\]');

  // ---- tokenizers whose sizes contradict the model
  const tokJson = JSON.parse(fs.readFileSync(path.join(hfDir, 'tokenizer.json'), 'utf8'));
  const hugeId = JSON.parse(JSON.stringify(tokJson));
  hugeId.added_tokens = [...(hugeId.added_tokens ?? []), { id: 1e9, content: '<huge>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }];
  cases.push({ name: 'tokenizer.json with an added token id 1e9', args: ['eval', 'ppl', hfDir, '--text', calib, '--tokenizer', write('huge-id.json', JSON.stringify(hugeId))], expect: 'huge-id\\.json: added token "<huge>" has id 1000000000', code: 1, inputs: [hfDir], outputs: [] });
  const half = JSON.parse(JSON.stringify(tokJson));
  const vocabEntries = Object.entries(half.model.vocab).sort((x, y) => x[1] - y[1]);
  half.model.vocab = Object.fromEntries(vocabEntries.slice(0, Math.floor(vocabEntries.length / 2)));
  half.model.merges = [];
  cases.push({ name: 'tokenizer.json holding half the vocabulary', args: ['eval', 'ppl', hfDir, '--text', calib, '--tokenizer', write('half.json', JSON.stringify(half))], expect: 'half\\.json: the tokenizer has .* tokens but the model .* has a vocabulary of', code: 1, inputs: [hfDir], outputs: [] });
  const tok512 = fs.readFileSync(D('models', 'stories260K', 'tok512.bin'));
  let cut100 = 4;
  for (let i = 0; i < 100; i++) cut100 += 8 + tok512.readInt32LE(cut100 + 4);
  cases.push({ name: 'tok512.bin holding 100 tokens', args: ['eval', 'ppl', storiesGguf, '--text', calib, '--tokenizer', write('tok100.bin', tok512.subarray(0, cut100))], expect: 'tok100\\.bin: the tokenizer has 100 tokens but the model', code: 1, inputs: [storiesGguf], outputs: [] });
  info2Later.push(['config.json: intermediate_size 0', (c) => { c.intermediate_size = 0; }, 'config\\.json.*intermediate_size must be positive']);
  info2Later.push(['config.json: sliding_window -5', (c) => { c.sliding_window = -5; }, 'config\\.json.*sliding window must not be negative']);
  info2Later.push(['config.json: RoPE scaling factor 0', (c) => { c.rope_scaling = { rope_type: 'linear', factor: 0 }; }, 'config\\.json.*RoPE scaling factor must be a positive number']);

  // ---- llama2.c
  info('llama2.c: truncated', write('cut.bin', bin.subarray(0, bin.length - 1000)), 'cut\\.bin.*truncated');
  info('llama2.c: trailing data', write('trail.bin', Buffer.concat([bin, Buffer.alloc(100)])), 'trail\\.bin.*trailing data');
  info('llama2.c: heads do not divide dim', write('heads.bin', patch(bin, [[12, (b, o) => b.writeInt32LE(7, o)]])), 'heads\\.bin.*n_heads 7 does not divide');
  info('llama2.c: absurd vocabulary', write('vocab.bin', patch(bin, [[20, (b, o) => b.writeInt32LE(-2147483648, o)]])), 'vocab\\.bin.*vocab_size');

  // ---- Hugging Face directories
  const hfCopy = (name, edit) => {
    const d = at(name);
    fs.mkdirSync(d, { recursive: true });
    for (const f of fs.readdirSync(hfDir)) fs.copyFileSync(path.join(hfDir, f), path.join(d, f));
    edit(d);
    return d;
  };
  const st = fs.readFileSync(path.join(hfDir, 'model.safetensors'));
  const stHeaderLen = Number(st.readBigUInt64LE(0));
  const stHeader = JSON.parse(st.toString('utf8', 8, 8 + stHeaderLen));
  const stData = st.subarray(8 + stHeaderLen);
  const withHeader = (edit) => { const h = JSON.parse(JSON.stringify(stHeader)); edit(h); return safetensorsFile(h, stData); };
  const someTensor = Object.keys(stHeader).find((k) => k.includes('layers.0.mlp.down_proj'));
  const info2 = (name, d, expect) => cases.push({ name, args: ['info', d], expect, code: 1, inputs: [path.join(d, 'model.safetensors'), path.join(d, 'config.json')].filter((f) => fs.existsSync(f)), outputs: [] });
  info2('safetensors: implausible header length', hfCopy('hf-hlen', (d) => { const b = Buffer.from(st); b.writeBigUInt64LE(1n << 50n, 0); fs.writeFileSync(path.join(d, 'model.safetensors'), b); }), 'model\\.safetensors.*header length');
  info2('safetensors: header is not JSON', hfCopy('hf-json', (d) => { const b = Buffer.from(st); b.write('!', 8); fs.writeFileSync(path.join(d, 'model.safetensors'), b); }), 'model\\.safetensors.*not valid JSON');
  info2('safetensors: unknown dtype', hfCopy('hf-dtype', (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), withHeader((h) => { h[someTensor].dtype = 'F8_E9M9'; }))), `model\\.safetensors.*unknown dtype 'F8_E9M9'`);
  info2('safetensors: integer weights', hfCopy('hf-int', (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), withHeader((h) => { h[someTensor].dtype = 'I8'; h[someTensor].data_offsets[1] = h[someTensor].data_offsets[0] + h[someTensor].shape.reduce((a, b) => a * b, 1); }))), 'model\\.safetensors.*(I8|dtype)');
  info2('safetensors: offsets beyond the data', hfCopy('hf-offsets', (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), withHeader((h) => { h[someTensor].data_offsets = [stData.length, stData.length + 4 * h[someTensor].shape.reduce((a, b) => a * b, 1)]; }))), 'model\\.safetensors.*outside the data section');
  info2('safetensors: overlapping tensors', hfCopy('hf-overlap', (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), withHeader((h) => { const ks = Object.keys(h).filter((k) => k !== '__metadata__'); h[ks[1]].data_offsets = [...h[ks[0]].data_offsets]; h[ks[1]].shape = [...h[ks[0]].shape]; }))), 'model\\.safetensors.*overlap');
  info2('safetensors: truncated data', hfCopy('hf-cut', (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), st.subarray(0, st.length - 4096))), 'model\\.safetensors.*outside the data section');
  info2('config.json: not JSON', hfCopy('hf-cfg', (d) => fs.writeFileSync(path.join(d, 'config.json'), '{"hidden_size": 128,')), 'config\\.json.*not valid JSON');
  info2('config.json: missing hidden_size', hfCopy('hf-cfg2', (d) => { const c = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')); delete c.hidden_size; fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(c)); }), 'config\\.json.*hidden_size');
  info2('config.json: shape/config mismatch', hfCopy('hf-shape', (d) => { const c = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')); c.intermediate_size = 512; fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(c)); }), 'hf-shape.*(shape|expected)');
  info2('config.json: unsupported architecture', hfCopy('hf-arch', (d) => { const c = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')); c.model_type = 'gpt2'; fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(c)); }), 'config\\.json.*gpt2.*not supported');
  info2('sharded: a missing shard', hfCopy('hf-shard', (d) => {
    fs.renameSync(path.join(d, 'model.safetensors'), path.join(d, 'model-00001-of-00002.safetensors'));
    const map = Object.fromEntries(Object.keys(stHeader).filter((k) => k !== '__metadata__').map((k, i) => [k, i % 2 ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors']));
    fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));
  }), 'model-00002-of-00002\\.safetensors');
  for (const [name, edit, expect] of info2Later)
    info2(name, hfCopy(`hf-${name.replace(/\W+/g, '-')}`, (d) => { const c = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')); edit(c); fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(c)); }), expect);
  // ---- memory: refused up front (the limit stands in for a small machine)
  // the same weights as BF16: loading converts them back to float32 copies
  const bf16 = hfCopy('hf-bf16', (d) => writeBf16Safetensors(path.join(hfDir, 'model.safetensors'), path.join(d, 'model.safetensors')));
  cases.push({ name: 'memory: BF16 weights that do not fit once converted', args: ['info', bf16], env: { ENTROPRUNE_MEMORY_LIMIT: '1000000' }, expect: 'hf-bf16: its F16/BF16 weights take .* once converted to float32, but only 1\\.0 MiB of memory is available', code: 1, inputs: [path.join(bf16, 'model.safetensors')], outputs: [] });
  cases.push({ name: 'memory: analyze statistics and activations that do not fit', args: ['analyze', hfDir, '--calib', calib, '-o', at('mem.analysis.json')], env: { ENTROPRUNE_MEMORY_LIMIT: '20000000' }, expect: 'analyze needs about .* \\(statistics .*, activations .*\\) but only 19\\.1 MiB of memory is available: lower --batch', code: 1, inputs: [path.join(hfDir, 'model.safetensors')], outputs: [at('mem.analysis.json')] });
  cases.push({ name: 'model path that does not exist', args: ['info', at('nowhere.gguf')], expect: 'nowhere\\.gguf: no such file', code: 1, inputs: [], outputs: [] });

  // ---- tokenizers and texts
  const stories = D('models', 'stories260K', 'stories260K.gguf');
  const wiki = D('text', 'wikitext-2-raw', 'wiki.test.raw');
  cases.push({ name: 'tokenizer of another model (2048 tokens for a 512-token model)', args: ['eval', 'ppl', stories, '--text', wiki, '--tokenizer', path.join(hfDir, 'tokenizer.json')], expect: 'tokenizer\\.json: the tokenizer has 2048 tokens but the model .* has a vocabulary of 512', code: 1, inputs: [stories], outputs: [] });
  cases.push({ name: 'tokenizer.json that is not JSON', args: ['eval', 'ppl', stories, '--text', wiki, '--tokenizer', write('bad-tokenizer.json', '{"model": ')], expect: 'bad-tokenizer\\.json', code: 1, inputs: [stories], outputs: [] });
  const empty = write('empty.txt', '');
  cases.push({ name: 'empty evaluation text', args: ['eval', 'ppl', stories, '--text', empty], expect: 'empty\\.txt: the text file is empty', code: 1, inputs: [stories], outputs: [] });
  const short = write('short.txt', 'Once upon a time.');
  cases.push({ name: 'evaluation text shorter than one window', args: ['eval', 'ppl', stories, '--text', short, '--seq-len', '256'], expect: 'fewer than one window', code: 1, inputs: [stories], outputs: [] });
  cases.push({ name: 'empty calibration text', args: ['analyze', stories, '--calib', empty, '-o', at('a-empty.json')], expect: 'empty\\.txt', code: 1, inputs: [stories], outputs: [at('a-empty.json')] });
  cases.push({ name: 'calibration text too short for one window', args: ['analyze', stories, '--calib', short, '--seq-len', '256', '-o', at('a-short.json')], expect: 'short\\.txt', code: 1, inputs: [stories], outputs: [at('a-short.json')] });

  // ---- ratios, plans and outputs
  cases.push({ name: 'ratio above 1', args: ['prune', stories, '--ratio', '1.5', '--calib', calib, '-o', at('r.gguf')], expect: 'ratio must lie strictly between 0 and 1', code: 2, inputs: [stories], outputs: [at('r.gguf')] });
  cases.push({ name: 'ratio 0', args: ['prune', stories, '--ratio', '0', '--calib', calib, '-o', at('r0.gguf')], expect: 'ratio must lie strictly between 0 and 1', code: 2, inputs: [stories], outputs: [at('r0.gguf')] });
  return { cases, at, write };
}

/** Plans and outputs need a real analysis first; the test adds these cases after running analyze/plan. */
export function planCases(dir, data, goodPlan) {
  const at = (...p) => path.join(dir, ...p);
  const stories = path.join(data, 'models', 'stories260K', 'stories260K.gguf');
  const hf = path.join(data, 'models', 'tinystories-656K');
  const plan = JSON.parse(fs.readFileSync(goodPlan, 'utf8'));
  const writePlan = (name, edit) => { const p = JSON.parse(JSON.stringify(plan)); edit(p); fs.writeFileSync(at(name), JSON.stringify(p)); return at(name); };
  const cases = [];
  const apply = (name, model, planFile, out, expect, extra = []) => cases.push({ name, args: ['apply', model, planFile, '-o', out, '--no-verify', ...extra], expect, code: 1, inputs: [model, planFile], outputs: [out] });
  apply('plan made for another model', hf, goodPlan, at('other.gguf'), 'plan was made for another model');
  apply('plan with a head index out of range', stories, writePlan('p-range.json', (p) => { const b = p.blocks.find((x) => !x.attention.removed) ?? p.blocks[0]; b.attention.removed = false; b.attention.keptKvHeads = [0]; b.attention.keptHeads = [0, 99]; }), at('range.gguf'), 'p-range\\.json.*(99|range|head)');
  apply('plan with uneven GQA groups', stories, writePlan('p-gqa.json', (p) => { const b = p.blocks[0]; b.removed = false; b.attention = { removed: false, keptKvHeads: [0, 1], keptHeads: [0, 1, 2] }; }), at('gqa.gguf'), 'p-gqa\\.json.*(group|KV|same number)');
  apply('plan that is not JSON', stories, (fs.writeFileSync(at('p-bad.json'), '{"format": "entroprune.plan", '), at('p-bad.json')), at('bad.gguf'), 'p-bad\\.json.*(JSON|valid)');
  apply('plan of another format', stories, writePlan('p-format.json', (p) => { p.format = 'something.else'; }), at('fmt.gguf'), 'p-format\\.json.*format');

  // Analyses whose means cannot be trusted, and plans or planner options whose cost or result is absurd.
  const goodAnalysis = JSON.parse(fs.readFileSync(plan.analysis, 'utf8'));
  const analysisCopy = (name, edit, meansEdit) => {
    const a = JSON.parse(JSON.stringify(goodAnalysis));
    const side = fs.readFileSync(path.join(path.dirname(plan.analysis), goodAnalysis.means.file));
    a.means.file = `${name}.means.bin`;
    const buf = Buffer.from(side);
    if (meansEdit) meansEdit(buf);
    fs.writeFileSync(at(a.means.file), buf);
    a.means.sha256 = createHash('sha256').update(buf).digest('hex');
    edit(a);
    fs.writeFileSync(at(`${name}.json`), JSON.stringify(a));
    return at(`${name}.json`);
  };
  const planFrom = (name, analysisFile) => writePlan(name, (p) => { p.analysis = analysisFile; });
  const escape = analysisCopy('a-escape', (a) => { a.means.file = '../../../../dev/zero'; });
  apply('analysis whose means file points outside its folder', stories, planFrom('p-escape.json', escape), at('escape.gguf'), "a-escape\\.json: means\\.file must name a file beside the analysis", ['--analysis', escape]);
  const nanMeans = analysisCopy('a-nan', () => {}, (b) => b.writeDoubleLE(NaN, 8 * 3));
  apply('analysis whose means hold NaN', stories, planFrom('p-nan.json', nanMeans), at('nanmeans.gguf'), 'a-nan\\.means\\.bin: .* holds NaN', ['--analysis', nanMeans]);
  const short = analysisCopy('a-short', () => {}, () => {});
  fs.writeFileSync(at('a-short.means.bin'), Buffer.alloc(16));
  apply('analysis whose means file is shorter than it declares', stories, planFrom('p-short.json', short), at('short.gguf'), 'a-short\\.means\\.bin: 16 bytes, but .* declares', ['--analysis', short]);
  // 300,000 claimed heads: refused by size before any list is walked (the check was quadratic)
  apply('plan claiming 300,000 heads', stories, writePlan('p-huge.json', (p) => { const b = p.blocks[0]; b.removed = false; b.attention = { removed: false, keptKvHeads: [0], keptHeads: Array.from({ length: 300000 }, (_, i) => i) }; }), at('huge.gguf'), 'p-huge\\.json.*keeps 300000 query heads of a layer that has 8');
  const planOpt = (name, extra, expect) => cases.push({ name, args: ['plan', plan.analysis, '--ratio', '0.3', '--dry-run', ...extra], expect, code: 1, inputs: [plan.analysis], outputs: [] });
  planOpt('plan --max-block-ratio 0', ['--allocation', 'paper', '--max-block-ratio', '0'], 'maxBlockRatio 0 is below the target ratio 0\\.3');
  planOpt('plan --max-block-ratio 5', ['--allocation', 'paper', '--max-block-ratio', '5'], 'maxBlockRatio must lie in \\[0, 1\\]');
  planOpt('plan --temperature 1e308', ['--allocation', 'paper', '--temperature', '1e308'], 'temperature must lie in \\[0, 16\\]');
  const existing = at('exists.gguf');
  fs.writeFileSync(existing, 'do not touch');
  cases.push({ name: 'output exists (no --force)', args: ['apply', stories, goodPlan, '-o', existing, '--no-verify'], expect: 'exists\\.gguf: already exists \\(pass --force', code: 1, inputs: [stories, goodPlan, existing], outputs: [] });
  cases.push({ name: 'output would overwrite the input', args: ['apply', stories, goodPlan, '-o', stories, '--no-verify', '--force'], expect: 'would overwrite the input model', code: 1, inputs: [stories, goodPlan], outputs: [] });
  const notDir = at('a-file');
  fs.writeFileSync(notDir, 'x');
  apply('output directory is a file', stories, goodPlan, path.join(notDir, 'out.gguf'), 'a-file.*(not a directory|does not exist|cannot)');
  apply('output directory does not exist', stories, goodPlan, at('no', 'such', 'dir', 'out.gguf'), 'does not exist');
  // Disk full: a file-size limit makes write() fail with EFBIG partway (SIGXFSZ ignored), like a full disk.
  cases.push({ name: 'disk full while writing', args: ['apply', stories, goodPlan, '-o', at('full.gguf'), '--no-verify'], expect: 'full\\.gguf.*(cannot write|File too large|No space|write)', code: 1, inputs: [stories, goodPlan], outputs: [at('full.gguf')], fileSizeLimitKb: 200 });
  // A full disk while analyze replaces an existing pair: with a 40 KiB file-size limit the content-named
  // means file (about 15 KiB) is written and the analysis JSON (about 75 KiB) is not. The old pair must stay
  // as it was, byte for byte, and the new means file must not be left beside it.
  const pairDir = at('pair');
  fs.mkdirSync(pairDir, { recursive: true });
  const oldJson = path.join(pairDir, 'old.analysis.json');
  const oldMeans = path.join(pairDir, goodAnalysis.means.file.replace(/^.*?(\.means)/, 'old.analysis$1'));
  fs.copyFileSync(path.join(path.dirname(plan.analysis), goodAnalysis.means.file), oldMeans);
  fs.writeFileSync(oldJson, JSON.stringify({ ...goodAnalysis, means: { ...goodAnalysis.means, file: path.basename(oldMeans) } }));
  const wiki = path.join(data, 'text', 'wikitext-2-raw', 'wiki.valid.raw');
  cases.push({ name: 'disk full while analyze replaces an existing pair', args: ['analyze', stories, '--calib', wiki, '--samples', '8', '--seq-len', '128', '--sensitivity-windows', '4', '-o', oldJson],
    expect: 'old\\.analysis\\.json.*(cannot write|File too large|No space|write)', code: 1, inputs: [stories, oldJson, oldMeans], outputs: [], fileSizeLimitKb: 40, unchangedDirs: [pairDir] });
  // Refusals that need no model work come before it: a format that cannot hold the plan, a missing output folder.
  const wiki2 = path.join(data, 'text', 'wikitext-2-raw', 'wiki.valid.raw');
  cases.push({ name: 'prune to Hugging Face output without one shape: refused before the analysis', args: ['prune', hf, '--ratio', '0.3', '--calib', wiki2, '-o', at('hf-out'), '--format', 'hf', '--no-verify'],
    expect: 'hf-out: Hugging Face output needs one shape for every block.*--uniform', code: 1, inputs: [hf, wiki2], outputs: [at('hf-out'), at('hf-out.analysis.json'), at('hf-out.plan.json')], maxSeconds: 15 });
  cases.push({ name: 'prune to a llama2.c checkpoint with compensation: refused before the analysis', args: ['prune', stories, '--ratio', '0.3', '--calib', wiki2, '-o', at('out.bin'), '--no-verify'],
    expect: 'out\\.bin: a llama2\\.c checkpoint keeps every query head.*--no-compensation', code: 1, inputs: [stories, wiki2], outputs: [at('out.bin'), at('out.bin.analysis.json'), at('out.bin.plan.json')], maxSeconds: 15 });
  cases.push({ name: 'prune into a missing folder: refused before the analysis', args: ['prune', stories, '--ratio', '0.3', '--calib', wiki2, '-o', at('no-such-dir', 'out.gguf'), '--no-verify'],
    expect: 'no-such-dir: output directory does not exist', code: 1, inputs: [stories, wiki2], outputs: [at('no-such-dir')], maxSeconds: 15 });
  return cases;
}

/**
 * Outputs that would replace an HF input folder whole: the output folder is the input folder reached through
 * a linked parent, or a link to the input folder itself. Both must be refused with or without --force. The
 * input is a copy in the scratch folder, so that a broken guard replaces the copy, not the shared data.
 */
export function hfFolderCases(dir, data, hfPlan) {
  const at = (...p) => path.join(dir, ...p);
  const src = at('hf-input', 'tinystories-656K');
  fs.mkdirSync(src, { recursive: true });
  const hf = path.join(data, 'models', 'tinystories-656K');
  for (const f of fs.readdirSync(hf)) fs.copyFileSync(path.join(hf, f), path.join(src, f));
  if (!fs.existsSync(at('hf-parent-link'))) fs.symlinkSync(at('hf-input'), at('hf-parent-link'));
  if (!fs.existsSync(at('hf-folder-link'))) fs.symlinkSync(src, at('hf-folder-link'));
  const cases = [];
  for (const [name, out] of [['HF input folder reached through a linked parent (--force)', at('hf-parent-link', 'tinystories-656K')], ['HF input folder reached through a link to it (--force)', at('hf-folder-link')]])
    cases.push({ name, args: ['apply', src, hfPlan, '-o', out, '--format', 'hf', '--no-verify', '--force'], expect: 'the output is the input .*tinystories-656K', code: 1, inputs: [src, hfPlan], outputs: [], unchangedDirs: [src] });
  return cases;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir) { console.error('usage: make-corpus.mjs <dir>'); process.exit(2); }
  const data = process.env.ENTROPRUNE_TEST_DATA ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared', 'data');
  const { cases } = makeCorpus(dir, data);
  fs.writeFileSync(path.join(dir, 'cases.json'), JSON.stringify(cases, null, 1));
  console.log(`${cases.length} cases written to ${dir} (plan and output cases need an analysis: see test/bad-inputs.test.ts)`);
}
