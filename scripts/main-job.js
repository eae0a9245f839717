#!/usr/bin/env node
'use strict';
// `npm run main`: the main job on the bundled default model — stories260K from the shared data folder
// (ENTROPRUNE_TEST_DATA, default ../shared/data): prune 30 % of its block weights with the paper's method
// (calibration on WikiText-2 valid), verify the result in every runtime available, and compare WikiText-2
// test and TinyStories perplexity and zero-shot accuracy before and after (out/report.html), and time both
// models in both engines. Outputs go to ./out/ (replaced on every run).
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
const texts = [path.join(data, 'text', 'wikitext-2-raw', 'wiki.test.raw'), path.join(data, 'text', 'tinystories', 'tinystories_validation_head.txt')];
run(['info', model]);
// Prune, verify in every runtime, evaluate before/after (perplexity on both texts, the paper's five
// zero-shot tasks on seeded 200-document subsets) and write the HTML report; then time both models.
run(['prune', model, '--ratio', ratio, '--calib', path.join(data, 'text', 'wikitext-2-raw', 'wiki.valid.raw'), '--seq-len', '512', '-o', output, '--force',
  '--report', path.join(outDir, 'report.html'), '--eval', texts.join(','), '--eval-seq-len', '512', '--eval-max-tokens', '131072',
  '--tasks', 'paper', '--limit', '200', '--tasks-dir', path.join(data, 'tasks')]);
if (output.endsWith('.gguf')) run(['bench', output, '--against', model, '--rounds', '3']);
