#!/usr/bin/env node
// How analyze's and perplexity's cost grows: a doubling series of calibration tokens (fixed width) and of
// model width (fixed tokens) on synthetic models, each step timed, then the exponent of a least-squares fit
// of log(seconds) on log(size) printed beside the one the arithmetic predicts: tokens → 1 (every stage is a
// pass over the tokens, except the estimators, which see only the statistics: → 0); width → 2 for the
// forward work (matrix products of d × ~d weights per token) and up to 3 for the estimators (log-determinants
// of d × d covariances; the capture projects wider states to --proj-dim, which caps it).
//   node bench/scaling.mjs [--threads K] [--rounds R]
// Run by hand, on a quiet machine (timings are medians of R rounds); nothing here is a test.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const ep = require('../dist/lib');
const { native } = require('../dist/lib/native');

const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
const threads = ep.setThreads(flag('--threads', 0));
const rounds = flag('--rounds', 3);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ep-scaling-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function modelFile(dim) {
  const file = path.join(dir, `w${dim}.gguf`);
  if (!fs.existsSync(file))
    native().writeSyntheticGguf({ dim, vocab: 4096, headDim: 64, layers: Array.from({ length: 2 }, () => ({ nHead: dim / 64, nKvHead: dim / 64, ffn: Math.round((dim * 2.6875) / 64) * 64 })), seed: 1 }, file);
  return file;
}
function idsFile(tokens) {
  const file = path.join(dir, `ids-${tokens}.tokens`);
  const ids = new Int32Array(tokens + 4096);
  let x = 7;
  for (let i = 0; i < ids.length; i++) ids[i] = (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) % 4096;
  fs.writeFileSync(file, Buffer.from(ids.buffer));
  return { file, ids };
}

// One point: analyze's stages and a perplexity pass over the same number of tokens (medians of `rounds`).
async function point(dim, tokens) {
  const model = await ep.loadModel(modelFile(dim));
  const { file, ids } = idsFile(tokens);
  const seqLen = 256;
  const runs = [];
  for (let r = 0; r < rounds; r++) {
    const a = await ep.analyze(model, { calib: file, samples: tokens / seqLen, seqLen, sensitivity: false, seed: r });
    const t0 = process.hrtime.bigint();
    await ep.perplexityOfTokens(model, ids.subarray(0, tokens + 1), { seqLen });
    runs.push({ calibrate: a.stages.calibrate, estimators: a.stages.estimators, perplexity: Number(process.hrtime.bigint() - t0) / 1e9 });
  }
  model.dispose();
  return Object.fromEntries(['calibrate', 'estimators', 'perplexity'].map((k) => [k, median(runs.map((x) => x[k]))]));
}

// Slope of log(y) on log(x).
function exponent(xs, ys) {
  const lx = xs.map(Math.log), ly = ys.map((y) => Math.log(Math.max(y, 1e-9)));
  const mx = lx.reduce((s, v) => s + v, 0) / lx.length, my = ly.reduce((s, v) => s + v, 0) / ly.length;
  let num = 0, den = 0;
  lx.forEach((v, i) => ((num += (v - mx) * (ly[i] - my)), (den += (v - mx) ** 2)));
  return num / den;
}

function report(title, sizes, points, expected) {
  console.log(`\n${title}`);
  console.log(['size', 'calibrate s', 'estimators s', 'perplexity s'].map((h) => h.padStart(13)).join(''));
  sizes.forEach((s, i) => console.log([s, points[i].calibrate.toFixed(3), points[i].estimators.toFixed(3), points[i].perplexity.toFixed(3)].map((v) => String(v).padStart(13)).join('')));
  for (const k of ['calibrate', 'estimators', 'perplexity'])
    console.log(`  ${k.padEnd(11)} fitted exponent ${exponent(sizes, points.map((p) => p[k])).toFixed(2)}   (expected ${expected[k]})`);
}

console.log(`entroprune scaling benchmark: ${threads} thread(s), median of ${rounds} round(s), synthetic 2-block models, vocabulary 4096`);
const tokenSizes = [2048, 4096, 8192, 16384];
const byTokens = [];
for (const t of tokenSizes) byTokens.push(await point(512, t));
report('tokens (width 512)', tokenSizes, byTokens, { calibrate: '1', estimators: '0', perplexity: '1' });
const widths = [256, 512, 1024, 2048];
const byWidth = [];
for (const w of widths) byWidth.push(await point(w, 4096));
report('width (4096 tokens)', widths, byWidth, { calibrate: '2 (→ 1 where per-token work is not the products)', estimators: '≤ 3 (projection caps the joint dimension)', perplexity: '2' });
fs.rmSync(dir, { recursive: true, force: true });
