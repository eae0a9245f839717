// Values of the zero-shot metrics and the task driver that the other task tests leave open (found by mutation
// testing, docs/MUTATION.md): standard errors of one and two documents, the paper's average column, and the
// LAMBADA path (accuracy from the greedy flag, perplexity from the summed log-likelihoods) on a real model.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadModel, tokenizerFor } from '../lib';
import { averageAccuracy, prepareTask, scoreTask, selectDocs, type TaskResult } from '../lib/evaluate/tasks/zero-shot';
import { argmax, meanWithError } from '../lib/evaluate/tasks/metrics';
import { encodeRequest, scoreEncoded } from '../lib/evaluate/tasks/loglikelihood';
import type { TaskDoc } from '../lib/evaluate/tasks/task-files';
import { dataFile, STORIES_BIN } from './helpers/data';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'entroprune-tasks-values-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('metrics: edge values', () => {
  it('mean and standard error of zero, one and two documents', () => {
    const none = meanWithError([]);
    expect(none.value).toBeNaN();
    expect(none.stderr).toBeNaN();
    const one = meanWithError([0.25]);
    expect(one.value).toBe(0.25);
    expect(one.stderr).toBeNaN(); // a sample standard deviation needs two
    // [0, 1]: mean 0.5, sample variance ((0.5)² + (0.5)²) / 1 = 0.5, stderr sqrt(0.5 / 2) = 0.5
    expect(meanWithError([0, 1])).toEqual({ value: 0.5, stderr: 0.5 });
    // [1, 2, 6]: mean 3, sample variance (4 + 1 + 9) / 2 = 7, stderr sqrt(7 / 3)
    const three = meanWithError([1, 2, 6]);
    expect(three.value).toBe(3);
    expect(three.stderr).toBeCloseTo(Math.sqrt(7 / 3), 14);
  });

  it('argmax: the first of equal maxima, and a maximum in the last place', () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
    expect(argmax([1, 2, 5])).toBe(2);
    expect(argmax([-2])).toBe(0);
    expect(argmax(Float32Array.from([-5, -1, -3]))).toBe(1);
  });
});

describe('task driver: values', () => {
  const result = (acc: number, accNorm?: number): TaskResult => ({
    task: 't',
    docs: 1,
    totalDocs: 1,
    acc: { value: acc, stderr: 0 },
    accNorm: accNorm === undefined ? undefined : { value: accNorm, stderr: 0 },
    seconds: 0,
    tokens: 0,
  });

  it('averageAccuracy: acc_norm where a task reports it, else acc; NaN for no tasks', () => {
    expect(averageAccuracy([result(0.2, 0.6), result(0.4)])).toBeCloseTo(0.5, 14); // (0.6 + 0.4) / 2
    expect(averageAccuracy([result(0.3)])).toBe(0.3);
    expect(averageAccuracy([])).toBeNaN();
  });

  it('selectDocs: all documents without a limit or with one at least their number; a seeded subset below it', () => {
    const docs: TaskDoc[] = Array.from({ length: 10 }, (_, i) => ({ kind: 'last-word', context: `c${i}`, continuation: ` w${i}` }));
    expect(selectDocs(docs, undefined, 0)).toEqual(docs);
    expect(selectDocs(docs, 10, 0)).toEqual(docs);
    expect(selectDocs(docs, 25, 0)).toEqual(docs);
    expect(selectDocs(docs, 1, 0)).toHaveLength(1); // 1 is a valid limit
    const four = selectDocs(docs, 4, 1);
    expect(four).toHaveLength(4);
    expect(new Set(four).size).toBe(4);
    expect(four.every((d) => docs.includes(d))).toBe(true);
    expect(() => selectDocs(docs, 2.5, 0)).toThrow(/limit must be a positive integer \(got 2\.5\)/);
    expect(() => selectDocs(docs, -1, 0)).toThrow(/limit must be a positive integer/);
  });

  it('LAMBADA on stories260K: acc from the greedy flags, ppl = exp(−mean log-likelihood), tokens counted', async () => {
    const model = await loadModel(dataFile(STORIES_BIN));
    const tok = tokenizerFor(model);
    const dir = path.join(scratch, 'lambada');
    fs.mkdirSync(dir);
    // one continuation the story model predicts greedily, one it does not
    const rows = [
      { context: 'Once upon a time, there was a little girl named', continuation: 'Lily' },
      { context: 'She loved to play outside in the', continuation: 'quantum' },
    ];
    fs.writeFileSync(path.join(dir, 'lambada_openai.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const t = await prepareTask(model, tok, 'lambada', { tasksDir: dir });
    expect(t.totalDocs).toBe(2);
    const events: [string, { done: number; total: number }][] = [];
    const r = await scoreTask(model, t, { onProgress: (task, e) => events.push([task, e]) });
    expect(events.length).toBeGreaterThan(0);
    expect(events.every(([task]) => task === 'lambada')).toBe(true);
    expect(events[events.length - 1][1].done).toBe(events[events.length - 1][1].total);
    // independently: the same requests scored one by one
    const scores = await scoreEncoded(model, rows.map((x) => encodeRequest(tok, { context: x.context, continuation: ' ' + x.continuation }, 512)));
    expect(scores.map((s) => s.greedy)).toEqual([true, false]);
    expect(r.task).toBe('lambada');
    expect(r.docs).toBe(2);
    expect(r.acc.value).toBe(0.5);
    expect(r.acc.stderr).toBeCloseTo(0.5, 14);
    expect(r.accNorm).toBeUndefined(); // LAMBADA reports acc and ppl only
    expect(r.ppl).toBeCloseTo(Math.exp(-(scores[0].logprob + scores[1].logprob) / 2), 6);
    expect(r.ppl!).toBeGreaterThan(1);
    expect(r.tokens).toBe(t.encoded[0].tokens.length + t.encoded[1].tokens.length);
    expect(r.seconds).toBeGreaterThan(0);
    expect(r.seconds).toBeLessThan(60); // seconds, not nanoseconds
  });

  it('a multiple-choice task reports acc_norm and no perplexity; the documents are scored in order', async () => {
    const model = await loadModel(dataFile(STORIES_BIN));
    const tok = tokenizerFor(model);
    const dir = path.join(scratch, 'piqa');
    fs.mkdirSync(dir);
    const rows = [
      { query: 'Question: Once upon a time, there was a little girl named\n', choices: ['Lily.', 'quantum chromodynamics.'], gold: 0 },
      { query: 'Question: She loved to play outside in the\n', choices: ['xylophone zebra quartz.', 'park.'], gold: 0 },
      { query: 'Question: One day, Lily went to the\n', choices: ['zebra quartz vandal.', 'park.'], gold: 1 },
    ];
    fs.writeFileSync(path.join(dir, 'piqa.jsonl'), rows.map((x) => JSON.stringify(x)).join('\n') + '\n');
    const t = await prepareTask(model, tok, 'piqa', { tasksDir: dir });
    const r = await scoreTask(model, t);
    expect(r.ppl).toBeUndefined();
    expect(r.accNorm).toBeDefined();
    // by hand: each document's choices scored from its own requests (6 requests, 2 per document)
    const scores = await scoreEncoded(model, t.encoded);
    const want = t.docs.map((d, i) => {
      if (d.kind !== 'choice') throw new Error('choice documents expected');
      const lps = [scores[2 * i].logprob, scores[2 * i + 1].logprob];
      return argmax(lps) === d.gold ? 1 : 0;
    });
    expect(want).toEqual([1, 0, 1]); // the story words win, so the second document (gold flipped) is wrong
    expect(r.acc.value).toBeCloseTo(2 / 3, 14);
    expect(r.tokens).toBe(t.encoded.reduce((n, e) => n + e.tokens.length, 0));
  });
});
