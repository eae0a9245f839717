// The layer-input capture behind the refit steps and the least-squares refit (native/core/device/
// layer_input_passes.h), side by side in one run (run by hand): the same covariances captured in batch-major
// passes (a budget of one block's accumulators) and in one block-major sweep (a budget just above every token's
// hidden state plus one block's accumulators), alternating; medians and their ratio printed, and the steps
// compared (they must be equal: the moments are bit-identical).
//   node bench/layer-input-sweep.mjs [model] [--samples 16] [--seq-len 256] [--rounds 3]
// Default model: a random-weight 2-block LLaMA-2-7B (entroprune synth llama2-7b --layers 2), written once to the
// temporary folder.
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const ep = require(path.join(root, 'dist', 'lib', 'index.js'));
const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
let model = argv[0] && !argv[0].startsWith('--') ? argv[0] : path.join(os.tmpdir(), 'entroprune-bench-llama2-7b-2l.gguf');
if (!fs.existsSync(model)) {
  const r = spawnSync(process.execPath, [path.join(root, 'bin', 'entroprune.js'), 'synth', 'llama2-7b', '--layers', '2', '-o', model], { encoding: 'utf8', stdio: 'inherit' });
  if (r.status !== 0) process.exit(1);
}
const nSeqs = Number(opt('--samples', '16')), seqLen = Number(opt('--seq-len', '256')), rounds = Number(opt('--rounds', '3'));
const m = await ep.loadModel(model);
const info = m.info;
const L = info.layers.length;
let seed = 7;
const tokens = Int32Array.from({ length: nSeqs * seqLen }, () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % info.vocab);
const order = (n) => Int32Array.from({ length: n }, (_, i) => i);
const orders = [{ attn: info.layers.map((s) => order(s.nKvHead)), mlp: info.layers.map((s) => order(s.ffn)) }];
const acc = (n) => n * n * (n > 1024 ? 12 : 8);
const block = Math.max(...info.layers.map((s) => acc(s.nHead * info.headDim) + acc(s.ffn)));
const hidden = nSeqs * seqLen * info.dim * 4;
const run = async (memoryBudget) => {
  const t0 = process.hrtime.bigint();
  const r = await m.handle.refitDamage({ tokens, nSeqs, seqLen, batchSeqs: Math.max(1, Math.floor(4096 / seqLen)), memoryBudget, orders }).promise;
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, passes: r.passes, steps: r.steps[0] };
};
const passes = [], sweep = [];
let a, b;
for (let i = 0; i < rounds; i++) {
  a = await run(Math.max(...info.layers.map((s) => Math.max(acc(s.nHead * info.headDim), acc(s.ffn)))));
  b = await run(hidden + block + 1);
  passes.push(a.seconds);
  sweep.push(b.seconds);
}
const same = a.steps.mlp.every((x, l) => x.every((v, j) => v === b.steps.mlp[l][j])) && a.steps.attn.every((x, l) => x.every((v, j) => v === b.steps.attn[l][j]));
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const pa = median(passes), sw = median(sweep);
console.log(`${path.basename(model)} (${L} blocks), ${nSeqs} × ${seqLen} tokens: ${a.passes} batch-major passes ${pa.toFixed(2)} s, one block-major sweep ${sw.toFixed(2)} s (${(pa / sw).toFixed(2)}× faster; medians of ${rounds}); steps ${same ? 'identical' : 'DIFFER'}`);
if (!same) process.exit(1);
