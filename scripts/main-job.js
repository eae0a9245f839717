#!/usr/bin/env node
'use strict';
// `npm run main`: the main job on the bundled default model (stories260K from the shared data folder,
// ENTROPRUNE_TEST_DATA, default ../shared/data). Today the pipeline ends at evaluation: it loads the model,
// prints its configuration and its WikiText-2 and TinyStories perplexity. The pruning stages (analyze →
// plan → apply) are added here as they land.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const data = path.resolve(process.env.ENTROPRUNE_TEST_DATA || path.join(root, '..', 'shared', 'data'));
const model = process.argv[2] || path.join(data, 'models', 'stories260K', 'stories260K.gguf');
if (!fs.existsSync(model)) {
  console.error(`main job: default model not found at ${model}; set ENTROPRUNE_TEST_DATA to the shared data folder or pass a model path`);
  process.exit(1);
}
const cli = path.join(root, 'bin', 'entroprune.js');
const run = (args) => {
  console.log(`$ entroprune ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
run(['info', model]);
run(['eval', 'ppl', model, '--text', path.join(data, 'text', 'wikitext-2-raw', 'wiki.test.raw'), '--seq-len', '512']);
run(['eval', 'ppl', model, '--text', path.join(data, 'text', 'tinystories', 'tinystories_validation_head.txt'), '--seq-len', '512']);
