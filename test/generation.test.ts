// Greedy-continuation figures: closed-form cases for the repetition statistics, prompts from a held-out
// stream, and a real model's continuations (a loop shows as a long run and a high rep-4).
import { describe, expect, it } from 'vitest';

import { loadModel, tokenizerFor } from '../lib';
import { generationPrompts, generationQuality, repetitionFigures } from '../lib/evaluate/generation';
import { encodeStreamPrefix } from '../lib/evaluate/perplexity';
import * as fs from 'node:fs';
import { dataFile, STORIES_GGUF, TINYSTORIES_TEXT } from './helpers/data';

describe('repetition figures', () => {
  it('a one-token loop: every 4-gram after the first repeats, one distinct token, a run as long as the text', () => {
    const f = repetitionFigures([[5, 5, 5, 5, 5, 5]]);
    expect(f.repeat4).toBeCloseTo(2 / 3, 12);
    expect(f.distinct1).toBeCloseTo(1 / 6, 12);
    expect(f.distinct2).toBeCloseTo(1 / 5, 12);
    expect(f.longestRun).toBe(6);
    expect(f.looping).toBe(0); // a run of 6 is below the loop threshold of 8
    expect(repetitionFigures([[5, 5, 5, 5, 5, 5, 5, 5], [1, 2, 3]]).looping).toBe(1);
  });
  it('a repeated phrase: one 4-gram of five repeats, no run longer than one', () => {
    const f = repetitionFigures([[1, 2, 3, 4, 1, 2, 3, 4]]);
    expect(f.repeat4).toBeCloseTo(1 / 5, 12);
    expect(f.longestRun).toBe(1);
    expect(f.distinct2).toBeCloseTo(4 / 7, 12);
  });
  it('continuations are separate: the same 4-gram in two of them is no repetition', () => {
    expect(repetitionFigures([[1, 2, 3, 4], [1, 2, 3, 4]]).repeat4).toBe(0);
  });
});

describe('greedy continuations of a real model', () => {
  it('prompts come from evenly spaced places of the held-out stream, after BOS; the original stories260K does not loop', async () => {
    const model = await loadModel(dataFile(STORIES_GGUF));
    const tok = tokenizerFor(model);
    const stream = await encodeStreamPrefix(tok, fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(0, 100_000), 8192);
    const prompts = generationPrompts(stream, model.info.bos, 4, 16);
    expect(prompts.length).toBe(4);
    for (const p of prompts) {
      expect(p.length).toBe(17);
      expect(p[0]).toBe(model.info.bos);
    }
    expect(Array.from(prompts[0].subarray(1))).toEqual(Array.from(stream.subarray(1, 17)));
    const g = await generationQuality(model, prompts, 32);
    expect(g.continuations.length).toBe(4);
    expect(g.continuations.every((c) => c.length > 0 && c.length <= 32 && !c.includes(model.info.eos))).toBe(true);
    expect(g.longestRun).toBeLessThan(4);
    expect(g.distinct2).toBeGreaterThan(0.5);
  });
});
