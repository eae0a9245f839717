// A golden analysis of a real model: stories260K analyzed with fixed settings, its numbers — every block's
// transfer entropies (both readings), unit entropies, the sublayer means and the measured sensitivities —
// checked against the values recorded in test/golden/stories260K-analysis.json. It pins what the unit
// tests of each estimator cannot: the whole measure stage on real weights and text, so a change that moves
// any of them (a different ridge, window draw, capture order, estimator) shows up here with the field named.
// The tolerance (1e-4 of max(1, |value|)) admits rounding that differs between CPUs (OpenBLAS picks its
// kernels per CPU; ~1e-9 between thread counts) and nothing a real change makes: a ridge, window draw or
// estimator change moves these numbers by 1e-3 and more.
//   Re-record after an intended change: ENTROPRUNE_UPDATE_GOLDEN=1 npx vitest run test/golden-analysis.test.ts
import * as fs from 'node:fs';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { analyze, loadModel } from '../lib';
import { dataFile, STORIES_GGUF, tempDir, TINYSTORIES_TEXT } from './helpers/data';

const GOLDEN = path.join(__dirname, 'golden', 'stories260K-analysis.json');

type Figures = Record<string, number[]>;

async function figures(): Promise<Figures> {
  const model = await loadModel(dataFile(STORIES_GGUF));
  const calib = path.join(tempDir(), 'golden-calib.txt');
  fs.writeFileSync(calib, fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(0, 60_000));
  const r = await analyze(model, { calib, samples: 8, seqLen: 64, seed: 3, sensitivity: { windows: 2, seqLen: 32 } });
  const a = r.analysis;
  const out: Figures = {};
  a.blocks.forEach((b, l) => {
    out[`block ${l} te, teAttn, teMlp`] = [b.te, b.teAttn, b.teMlp];
    out[`block ${l} teStream, teStreamAttn, teStreamMlp`] = [b.teStream ?? NaN, b.teStreamAttn ?? NaN, b.teStreamMlp ?? NaN];
    out[`block ${l} head entropies`] = b.attention?.headEntropy ?? [];
    out[`block ${l} channel entropies (first 16)`] = (b.mlp?.channelEntropy ?? []).slice(0, 16);
    out[`block ${l} attention output mean (first 8)`] = Array.from(r.mean(l, 'attnOutMean') ?? []).slice(0, 8);
    out[`block ${l} channel means (first 8)`] = Array.from(r.mean(l, 'channelMean') ?? []).slice(0, 8);
    out[`block ${l} refit steps of the KV groups`] = b.attention?.refitDamage?.entropy ?? [];
    out[`block ${l} refit steps of the channels (first 16)`] = (b.mlp?.refitDamage?.entropy ?? []).slice(0, 16);
  });
  const s = a.sensitivity!;
  out['sensitivity KL block, attn, mlp'] = [...s.kl.block, ...s.kl.attn, ...s.kl.mlp].map((x) => x ?? NaN);
  out['sensitivity base NLL'] = [s.baseNll];
  return out;
}

describe('golden analysis', () => {
  it('stories260K analyzed with fixed settings reproduces the recorded numbers (TE, unit entropies, means, refit steps, sensitivities)', async () => {
    const got = await figures();
    if (process.env.ENTROPRUNE_UPDATE_GOLDEN === '1') {
      fs.writeFileSync(GOLDEN, JSON.stringify(got, null, 1) + '\n');
      console.log(`recorded ${GOLDEN}`);
    }
    const want = JSON.parse(fs.readFileSync(GOLDEN, 'utf8')) as Figures;
    expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
    let worst = 0;
    for (const [field, values] of Object.entries(want)) {
      expect(got[field].length, field).toBe(values.length);
      values.forEach((w, i) => {
        const g = got[field][i];
        const rel = Math.abs(g - w) / Math.max(1, Math.abs(w));
        worst = Math.max(worst, rel);
        expect(rel, `${field}[${i}]: ${g} vs recorded ${w}`).toBeLessThanOrEqual(1e-4);
      });
    }
    console.log(`golden analysis: worst difference (relative beyond 1) ${worst.toExponential(2)} over ${Object.values(want).flat().length} numbers`);
  });
});
