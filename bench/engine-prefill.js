#!/usr/bin/env node
'use strict';
// entroprune's side of the prefill benchmark: ceil(N/T) sequences of T pseudo-random ids (the same LCG as
// test/peer/llama-bench.mjs), one warm-up, best of R timed passes. Scores every position (logits + NLL over
// the whole vocabulary), i.e. more work than llama.cpp's last-token-only prompt processing.
//   node bench/engine-prefill.js <model> --tokens N --seq-len T --threads K [--repeats R]
const { loadModel, setThreads } = require('../dist/lib');

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i < 0 ? fallback : Number(args[i + 1]);
};
(async () => {
  const [modelPath] = args;
  const tokens = flag('--tokens'), seqLen = flag('--seq-len'), threads = flag('--threads'), repeats = flag('--repeats', 3);
  setThreads(threads);
  const model = await loadModel(modelPath);
  const vocab = model.info.vocab;
  let state = 12345;
  const nextId = () => 3 + ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 8) % (vocab - 3);
  const nSeqs = Math.ceil(tokens / seqLen);
  const ids = Int32Array.from({ length: nSeqs * seqLen }, nextId);
  const pass = async () => {
    const t0 = process.hrtime.bigint();
    await model.handle.evaluate({ tokens: ids, nSeqs, seqLen, batchSeqs: 1, output: 'nll' }).promise;
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  await pass();
  let best = Infinity;
  for (let r = 0; r < repeats; r++) best = Math.min(best, await pass());
  console.log(JSON.stringify({ tokensPerSecond: ids.length / best, tokens: ids.length, seqLen, threads, seconds: best }));
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
