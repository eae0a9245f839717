#!/usr/bin/env node
'use strict';
// Prefill throughput of entroprune's engine against llama.cpp (node-llama-cpp, test/peer) on the same
// F32 GGUF, same token ids, same thread count, measured side by side in one run: the two alternate for
// several rounds (each in its own process) and the ratio of the medians is printed.
//   npm run bench -- [model.gguf] [--tokens N] [--seq-len T] [--threads K] [--rounds R]
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i < 0 ? fallback : args[i + 1];
};
const data = process.env.ENTROPRUNE_TEST_DATA || path.join(root, '..', 'shared', 'data');
const model = args[0] && !args[0].startsWith('--') ? args[0] : path.join(data, 'models', 'stories260K', 'stories260K.gguf');
const tokens = flag('--tokens', '8192'), seqLen = flag('--seq-len', '256'), threads = flag('--threads', '1'), rounds = Number(flag('--rounds', '3'));
const common = [model, '--tokens', tokens, '--seq-len', seqLen, '--threads', threads, '--repeats', '3'];

function run(script) {
  const r = spawnSync(process.execPath, [script, ...common], { encoding: 'utf8', cwd: root });
  if (r.status !== 0) throw new Error(`${script} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ours = [], theirs = [];
for (let i = 0; i < rounds; i++) {
  ours.push(run(path.join(root, 'bench', 'engine-prefill.js')).tokensPerSecond);
  theirs.push(run(path.join(root, 'test', 'peer', 'llama-bench.mjs')).tokensPerSecond);
}
const result = {
  model, tokens: Number(tokens), seqLen: Number(seqLen), threads: Number(threads), rounds,
  entropruneTokensPerSecond: median(ours), llamaCppTokensPerSecond: median(theirs),
  ratio: median(ours) / median(theirs), entropruneRuns: ours, llamaCppRuns: theirs,
};
console.log(`prefill ${seqLen}-token sequences, ${threads} thread(s): entroprune ${result.entropruneTokensPerSecond.toFixed(0)} tok/s, ` +
  `llama.cpp ${result.llamaCppTokensPerSecond.toFixed(0)} tok/s, ratio ${result.ratio.toFixed(2)}x`);
if (args.includes('--json')) console.log(JSON.stringify(result));
