#!/usr/bin/env node
'use strict';
// `npm run main`: the main job on the bundled default model — stories260K from the shared data folder
// (ENTROPRUNE_TEST_DATA, default ../shared/data): prune 30 % of its block weights with entroprune's default
// method, calibrated on TinyStories text (the validation head from character 500,000 on) and evaluated on
// text disjoint from it (its first 500,000 characters, and WikiText-2 test); verify the result in every
// runtime available, write out/report.html (perplexity and zero-shot accuracy before and after), print the
// method next to the baselines at the same ratio (`compare`), and time both models in both engines.
// Outputs go to ./out/ (replaced on every run).
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const data = path.resolve(process.env.ENTROPRUNE_TEST_DATA || path.join(root, '..', 'shared', 'data'));
const model = process.argv[2] || path.join(data, 'models', 'stories260K', 'stories260K.gguf');
const ratio = process.argv[3] || '0.3';
if (!fs.existsSync(model)) {
  console.error(`main job: default model not found at ${model}; set ENTROPRUNE_TEST_DATA to the shared data folder or pass a model path`);
  process.exit(1);
}
const outDir = path.join(root, 'out');
fs.mkdirSync(outDir, { recursive: true });
const output = path.join(outDir, `${path.basename(model).replace(/\.(gguf|bin)$/, '')}-pruned-${ratio}${model.endsWith('.gguf') || model.endsWith('.bin') ? '.gguf' : ''}`);
const cli = path.join(root, 'bin', 'entroprune.js');
const run = (args) => {
  console.log(`$ entroprune ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
// Calibration and evaluation text never overlap: the TinyStories head is split at character 500,000.
const stories = fs.readFileSync(path.join(data, 'text', 'tinystories', 'tinystories_validation_head.txt'), 'utf8');
const calib = path.join(outDir, 'tinystories-calibration.txt');
const heldOut = path.join(outDir, 'tinystories-heldout.txt');
fs.writeFileSync(calib, stories.slice(500000));
fs.writeFileSync(heldOut, stories.slice(0, 500000));
const texts = [heldOut, path.join(data, 'text', 'wikitext-2-raw', 'wiki.test.raw')];
run(['info', model]);
// Prune, verify in every runtime, evaluate before/after (perplexity on both texts, the paper's five
// zero-shot tasks on seeded 200-document subsets) and write the HTML report; then time both models.
run(['prune', model, '--ratio', ratio, '--calib', calib, '--seq-len', '512', '-o', output, '--force',
  '--report', path.join(outDir, 'report.html'), '--eval', texts.join(','), '--eval-seq-len', '512', '--eval-max-tokens', '131072',
  '--tasks', 'paper', '--limit', '200', '--tasks-dir', path.join(data, 'tasks')]);
// The method next to the baselines at the same ratio, on the held-out TinyStories text.
fs.rmSync(path.join(outDir, 'compare'), { recursive: true, force: true });
run(['compare', model, '--calib', calib, '--seq-len', '512', '--eval', heldOut, '--eval-seq-len', '512', '--eval-max-tokens', '65536', '--ratios', `0.2,${ratio},0.5`,
  '--methods', 'entropy,uniform,block-drop,layer-drop', '--tasks', 'none', '-o', path.join(outDir, 'compare')]);
if (output.endsWith('.gguf')) run(['bench', output, '--against', model, '--rounds', '3']);
