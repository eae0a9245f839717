#!/usr/bin/env node
'use strict';
// What activation capture costs: the whole `analyze` (forward + capture + estimators) against a plain
// forward pass (perplexity) over the same calibration tokens, alternating in one run. Target: < 25 % extra.
//   node bench/analyze-overhead.js [model] [--samples 32] [--seq-len 512] [--threads K] [--rounds 3]
const path = require('node:path');
const { loadModel, tokenizerFor, setThreads, analyze } = require('../dist/lib');
const { calibrationStream, sampleCalibration } = require('../dist/lib/measure/calibration');

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i < 0 ? fallback : Number(args[i + 1]);
};
const data = process.env.ENTROPRUNE_TEST_DATA || path.join(__dirname, '..', '..', 'shared', 'data');
(async () => {
  const modelPath = args[0] && !args[0].startsWith('--') ? args[0] : path.join(data, 'models', 'stories260K', 'stories260K.gguf');
  const calib = path.join(data, 'text', 'wikitext-2-raw', 'wiki.valid.raw');
  const samples = flag('--samples', 32), seqLen = flag('--seq-len', 512), rounds = flag('--rounds', 3);
  const threads = setThreads(flag('--threads', 0));
  const model = await loadModel(modelPath);
  const tokenizer = tokenizerFor(model);
  const { kind, stream } = calibrationStream(calib, tokenizer);
  const set = sampleCalibration(calib, kind, stream, model.info.vocab, { samples, seqLen, seed: 0 });
  const batchSeqs = Math.max(1, Math.floor(4096 / seqLen));
  const forward = async () => {
    const t0 = process.hrtime.bigint();
    await model.handle.evaluate({ tokens: set.tokens, nSeqs: samples, seqLen, batchSeqs, output: 'nll' }).promise;
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  const measure = async () => (await analyze(model, { calib, tokenizer, samples, seqLen, seed: 0, batchSeqs })).seconds;
  await forward();
  let f = Infinity, a = Infinity;
  for (let r = 0; r < rounds; r++) {
    f = Math.min(f, await forward());
    a = Math.min(a, await measure());
  }
  console.log(`${path.basename(modelPath)}: ${samples} × ${seqLen} tokens, ${threads} threads: forward ${f.toFixed(2)} s, analyze ${a.toFixed(2)} s, ` +
    `capture overhead ${((a / f - 1) * 100).toFixed(1)} % (target < 25 %)`);
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
