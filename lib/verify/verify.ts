// Verify: load a pruned model in every runtime available for its format and compare logits on a few real
// sequences. entroprune's own engine is the reference; llama.cpp (node-llama-cpp, an optional peer: see
// llama-cpp.ts) must agree on GGUF outputs.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { INSTALL_HINT, llamaCppScript } from './llama-cpp';
import { loadModel, Model } from '../load/model';
import { tokenizerFor } from '../load/tokenizer';

export interface VerifyRow {
  runtime: string;
  status: 'pass' | 'fail' | 'skipped';
  detail: string;
  maxLogitDiff?: number;
  argmaxAgreement?: number;
}

export interface VerifyOptions {
  /** text to draw sequences from (default: a built-in paragraph) */
  text?: string;
  sequences?: number;
  seqLen?: number;
  against?: string;
  tolerance?: number;
  /**
   * The pruned model fails "vs original" when its perplexity on the sequences exceeds this many times the
   * original's (default 20: a broken model is hundreds of times worse; 50 % pruning of the bundled models
   * stays below 10×), or is not finite.
   */
  maxPerplexityRatio?: number;
}

const DEFAULT_TEXT =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. ' +
  'One day, she saw a big red ball under a tree. She wanted to play with it, so she asked her mom if she could take it home. ' +
  'The history of the city goes back to the Roman period, when a small settlement grew along the river and became a market town.';

/** The llama.cpp logits script, when node-llama-cpp can be found (lib/verify/llama-cpp.ts). */
export function llamaPeerScript(): string | undefined {
  return llamaCppScript('llama-logits.mjs')?.script;
}

async function engineLogits(model: Model, seqs: number[][]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const s of seqs) out.push(await model.handle.evaluate({ tokens: Int32Array.from(s), nSeqs: 1, seqLen: s.length, output: 'logits' }).promise);
  return out;
}

export function llamaCppLogits(script: string, modelFile: string, seqs: number[][]): Float32Array {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'entroprune-verify-'));
  try {
    fs.writeFileSync(path.join(dir, 'tokens.json'), JSON.stringify({ sequences: seqs }));
    const env = llamaCppScript('llama-logits.mjs')?.env ?? process.env;
    const r = spawnSync(process.execPath, [script, modelFile, path.join(dir, 'tokens.json'), path.join(dir, 'out.bin'), '--threads', '1'], { encoding: 'utf8', timeout: 300_000, env });
    if (r.status !== 0) throw new Error(`llama.cpp could not run the model (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    const buf = fs.readFileSync(path.join(dir, 'out.bin'));
    return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function verify(prunedPath: string, o: VerifyOptions = {}): Promise<VerifyRow[]> {
  const rows: VerifyRow[] = [];
  const model = await loadModel(prunedPath);
  // A pruned model keeps its original's vocabulary: borrow the original's tokenizer when none came along.
  let tok;
  try {
    tok = tokenizerFor(model);
  } catch (e) {
    if (!o.against) throw e;
    tok = tokenizerFor(await loadModel(o.against));
  }
  const V = model.info.vocab;
  const ids = Array.from(tok.encode(o.text ?? DEFAULT_TEXT.repeat(8), { bos: true }));
  const seqLen = Math.min(o.seqLen ?? 64, ids.length);
  const n = Math.max(1, Math.min(o.sequences ?? 2, Math.floor(ids.length / seqLen)));
  const seqs = Array.from({ length: n }, (_, i) => ids.slice(i * seqLen, (i + 1) * seqLen));
  const ours = await engineLogits(model, seqs);
  const finite = ours.every((a) => a.every(Number.isFinite));
  rows.push({ runtime: 'entroprune', status: finite ? 'pass' : 'fail', detail: finite ? `loaded (${model.info.arch}, ${model.info.layers.length} blocks), ${n}×${seqLen} positions scored` : 'non-finite logits' });
  if (model.info.format === 'gguf') {
    const script = llamaPeerScript();
    if (!script) {
      rows.push({ runtime: 'llama.cpp', status: 'skipped', detail: INSTALL_HINT });
    } else {
      try {
        const theirs = llamaCppLogits(script, prunedPath, seqs);
        let maxDiff = 0;
        let agree = 0;
        for (let s = 0; s < n; s++)
          for (let t = 0; t < seqLen; t++) {
            let a = 0;
            let b = 0;
            for (let j = 0; j < V; j++) {
              const x = ours[s][t * V + j];
              const y = theirs[(s * seqLen + t) * V + j];
              maxDiff = Math.max(maxDiff, Math.abs(x - y));
              if (x > ours[s][t * V + a]) a = j;
              if (y > theirs[(s * seqLen + t) * V + b]) b = j;
            }
            if (a === b) agree++;
          }
        const tol = o.tolerance ?? 1e-3;
        rows.push({
          runtime: 'llama.cpp',
          status: maxDiff <= tol ? 'pass' : 'fail',
          detail: `max |Δlogit| ${maxDiff.toExponential(2)} (tolerance ${tol}), argmax agrees ${agree}/${n * seqLen}`,
          maxLogitDiff: maxDiff,
          argmaxAgreement: agree / (n * seqLen),
        });
      } catch (e) {
        rows.push({ runtime: 'llama.cpp', status: 'fail', detail: (e as Error).message });
      }
    }
  }
  if (o.against) {
    const orig = await loadModel(o.against);
    const ref = await engineLogits(orig, seqs);
    const nll = (l: Float32Array[]) => {
      let sum = 0;
      let count = 0;
      seqs.forEach((s, i) => {
        for (let t = 0; t + 1 < s.length; t++) {
          const row = l[i].subarray(t * V, (t + 1) * V);
          const mx = Math.max(...row);
          let z = 0;
          for (const v of row) z += Math.exp(v - mx);
          sum += Math.log(z) + mx - row[s[t + 1]];
          count++;
        }
      });
      return sum / count;
    };
    const limit = o.maxPerplexityRatio ?? 20;
    const before = Math.exp(nll(ref));
    const after = Math.exp(nll(ours));
    const ratio = after / before;
    rows.push({
      runtime: 'vs original',
      status: Number.isFinite(ratio) && ratio <= limit ? 'pass' : 'fail',
      detail: `perplexity on these sequences: original ${before.toFixed(3)}, pruned ${after.toFixed(3)} (${Number.isFinite(ratio) ? ratio.toFixed(2) : 'not finite'}× the original; fails above ${limit}×)`,
    });
  }
  return rows;
}
