// Agreement with llama.cpp (node-llama-cpp, installed test-only in test/peer by .ci/run), run in a child
// process because a failed GGML_ASSERT cannot be caught in-process.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadModel, tokenizerFor } from '../lib';
import { llamaCppScript } from '../lib/verify/llama-cpp';
import { dataFile, REPO_ROOT, STORIES_GGUF, tempDir, TINYSTORIES_TEXT, WIKI_TEST } from './helpers/data';

const PEER = path.join(REPO_ROOT, 'test', 'peer');
const scratch = tempDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function llamaCppLogits(model: string, sequences: number[][]): Float32Array {
  if (!fs.existsSync(path.join(PEER, 'node_modules', 'node-llama-cpp'))) {
    throw new Error('node-llama-cpp is not installed: run `npm ci` in test/peer (.ci/run does this)');
  }
  // the shipped driver script, told where node-llama-cpp is, as verify runs it
  const driver = llamaCppScript('llama-logits.mjs');
  if (!driver) throw new Error('scripts/llama-cpp/llama-logits.mjs or node-llama-cpp not found');
  const input = path.join(scratch, 'tokens.json');
  const out = path.join(scratch, 'logits.bin');
  fs.writeFileSync(input, JSON.stringify({ sequences }));
  const r = spawnSync(process.execPath, [driver.script, model, input, out, '--threads', '1'], { encoding: 'utf8', timeout: 170_000, env: driver.env });
  if (r.status !== 0) throw new Error(`llama-logits.mjs failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const buf = fs.readFileSync(out);
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

describe('llama.cpp agreement (node-llama-cpp 3.21.1)', () => {
  it('stories260K logits agree with llama.cpp on 2 × 256 positions of real text', async () => {
    const file = dataFile(STORIES_GGUF);
    const model = await loadModel(file);
    const tok = tokenizerFor(model);
    const seqs = [TINYSTORIES_TEXT, WIKI_TEST].map((t) => Array.from(tok.encode(fs.readFileSync(dataFile(t), 'utf8').slice(0, 4000), { bos: true }).subarray(0, 256)));
    for (const s of seqs) expect(s.length).toBe(256);
    const theirs = llamaCppLogits(file, seqs);
    const V = model.info.vocab;
    expect(theirs.length).toBe(2 * 256 * V);
    let maxDiff = 0;
    let argmaxAgree = 0;
    for (let s = 0; s < 2; s++) {
      const ours = await model.handle.evaluate({ tokens: Int32Array.from(seqs[s]), nSeqs: 1, seqLen: 256, output: 'logits' }).promise;
      for (let t = 0; t < 256; t++) {
        let a = 0;
        let b = 0;
        for (let j = 0; j < V; j++) {
          const x = ours[t * V + j];
          const y = theirs[(s * 256 + t) * V + j];
          maxDiff = Math.max(maxDiff, Math.abs(x - y));
          if (x > ours[t * V + a]) a = j;
          if (y > theirs[(s * 256 + t) * V + b]) b = j;
        }
        if (a === b) argmaxAgree++;
      }
    }
    console.log(`stories260K vs llama.cpp: max |logit difference| over 512 positions × ${V} = ${maxDiff.toExponential(3)}, argmax agrees at ${argmaxAgree}/512`);
    expect(maxDiff).toBeLessThan(5e-4);
    expect(argmaxAgree).toBeGreaterThanOrEqual(510);
  });
});
