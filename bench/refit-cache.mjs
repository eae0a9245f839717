// The measured refinement with and without the refit moment cache (createRefitCache), side by side in one run
// (run by hand): analyze once, then refinedPlan at each ratio with a cache shared by its candidates and with a
// cache that keeps nothing (every candidate captures its layers again, as before the cache), alternating; medians
// printed with their ratio, and a check that both choose the same plan with the same measured losses.
//   node bench/refit-cache.mjs [model] [--samples 128] [--seq-len 512] [--ratios 0.2,0.3,0.4,0.5] [--rounds 3]
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ep = createRequire(import.meta.url)(path.join(root, 'dist', 'lib', 'index.js'));
const data = process.env.ENTROPRUNE_TEST_DATA ?? path.join(root, '..', 'shared', 'data');
const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
const modelPath = argv[0] && !argv[0].startsWith('--') ? argv[0] : path.join(data, 'models', 'stories260K', 'stories260K.gguf');
const calib = path.join(data, 'text', 'tinystories', 'tinystories_validation_head.txt');
const samples = Number(opt('--samples', '128')), seqLen = Number(opt('--seq-len', '512')), rounds = Number(opt('--rounds', '3'));
const ratios = opt('--ratios', '0.2,0.3,0.4,0.5').split(',').map(Number);

const model = await ep.loadModel(modelPath);
const analysis = await ep.analyze(model, { calib, samples, seqLen });
const options = (ratio) => ({ ratio, vocab: model.info.vocab, tiedOutput: model.info.tiedOutput });
const refine = async (ratio, cache) => {
  const t0 = process.hrtime.bigint();
  const p = await ep.refinedPlan(model, analysis, options(ratio), { windows: analysis.sensitivityWindows, refitCache: cache });
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, p };
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let same = true;
for (const ratio of ratios) {
  const shared = [], none = [];
  for (let i = 0; i < rounds; i++) {
    const a = await refine(ratio, undefined); // refinedPlan's own cache, shared by its candidates
    const b = await refine(ratio, ep.createRefitCache(0)); // keeps nothing: a capture per candidate
    shared.push(a.seconds);
    none.push(b.seconds);
    const key = (p) => JSON.stringify({ blocks: p.blocks, candidates: p.refinement?.candidates });
    if (key(a.p) !== key(b.p)) same = false;
  }
  const s = median(shared), n = median(none);
  console.log(`${path.basename(modelPath)} ${(ratio * 100).toFixed(0)} %: refinement ${n.toFixed(2)} s capturing per candidate, ${s.toFixed(2)} s with the shared cache (${(n / s).toFixed(2)}× faster; medians of ${rounds}, ${samples} × ${seqLen} calibration tokens)`);
}
console.log(same ? 'same plans and measured losses with and without the cache: pass' : 'the cache changed a plan or a measured loss: FAIL');
process.exitCode = same ? 0 : 1;
