// Zero-shot scoring: lm-eval's metrics on hand-made items with known answers, the harness's request
// encoding, the task file formats, and scoring on a real model checked against its own greedy story and
// against the perplexity path's per-token NLL.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { evaluateTask, loadModel, loadTaskDocs, selectDocs, TASKS, tokenizerFor, type Tokenizer } from '../lib';
import { choiceMetrics, meanWithError, pythonLength } from '../lib/evaluate/tasks/metrics';
import { encodeRequest, encodeRequests, scoreEncoded } from '../lib/evaluate/tasks/loglikelihood';
import { seededSubset } from '../lib/util/random';
import { prepareTask, scoreTask } from '../lib/evaluate/tasks/zero-shot';
import { runCli } from './helpers/cli';
import { dataFile, DATA_DIR, STORIES_BIN, STORIES_GGUF, TINY_HF } from './helpers/data';

/** One token per character, BOS = 1: makes the harness's encoding rules visible. */
const charTokenizer: Tokenizer = {
  kind: 'tokenizer.json',
  source: 'test',
  vocabSize: 65536,
  bos: 1,
  eos: 2,
  encode: (text, o) => Int32Array.from([...(o?.bos ? [1] : []), ...[...text].map((c) => c.codePointAt(0)! % 65536)]),
  decode: (ids) => String.fromCodePoint(...Array.from(ids)),
};

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'entroprune-tasks-'));
}

describe('lm-eval metrics', () => {
  it('acc takes the largest log-likelihood; acc_norm divides by the choice length in characters', () => {
    // raw: choice 0 wins (−10 > −12); per character: −10/2 = −5 < −12/8 = −1.5, so choice 1 wins.
    expect(choiceMetrics([-10, -12], ['ab', 'abcdefgh'], 0)).toEqual({ acc: 1, accNorm: 0 });
    expect(choiceMetrics([-10, -12], ['ab', 'abcdefgh'], 1)).toEqual({ acc: 0, accNorm: 1 });
    // Normalisation by characters, not tokens or bytes: a 4-byte emoji and an accented letter count once,
    // as Python's len() counts them. −3/1 > −4/2 would flip if 'é😀' counted as 3 UTF-16 units or 6 bytes.
    expect(pythonLength('é😀')).toBe(2);
    expect(choiceMetrics([-3, -4], ['x', 'é😀'], 1)).toEqual({ acc: 0, accNorm: 1 });
    // Ties go to the first choice, like numpy.argmax.
    expect(choiceMetrics([-1, -1], ['a', 'b'], 0)).toEqual({ acc: 1, accNorm: 1 });
  });

  it('standard error is lm-eval mean_stderr (sample std / sqrt n)', () => {
    const m = meanWithError([1, 0, 1, 1]);
    expect(m.value).toBe(0.75);
    expect(m.stderr).toBeCloseTo(Math.sqrt((0.75 * 0.25 * 4) / 3 / 4), 12);
  });

  it('seeded subsets are reproducible, ordered and distinct per seed', () => {
    const a = seededSubset(1000, 50, 7);
    expect(a).toEqual(seededSubset(1000, 50, 7));
    expect(new Set(a).size).toBe(50);
    expect([...a].sort((x, y) => x - y)).toEqual(a);
    expect(a).not.toEqual(seededSubset(1000, 50, 8));
    expect(seededSubset(10, 50, 1)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('request encoding (lm-eval _encode_pair)', () => {
  it('moves the context\'s trailing spaces into the continuation and marks where scoring starts', () => {
    const r = encodeRequest(charTokenizer, { context: 'Q: x\nA: ', continuation: 'yes' }, 2048);
    expect(Array.from(r.tokens)).toEqual([1, ...[...'Q: x\nA: yes'].map((c) => c.charCodeAt(0))]);
    expect(r.target).toBe(1 + 'Q: x\nA:'.length); // the space now belongs to the continuation
  });

  it('truncates from the left to the model context, keeping the continuation whole', () => {
    const r = encodeRequest(charTokenizer, { context: 'abcdefghij', continuation: ' xyz' }, 6);
    expect(r.tokens.length).toBe(6);
    expect(String.fromCharCode(...Array.from(r.tokens))).toBe('hij xyz'.slice(-6));
    expect(r.target).toBe(2); // 'ij' of the context remain before ' xyz'
  });
});

describe('task files', () => {
  it('parse every format with lm-eval prompts', () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'piqa.jsonl'), JSON.stringify({ query: 'Question: open a jar\n', choices: ['twist', 'smash'], gold: 0 }) + '\n');
    fs.writeFileSync(path.join(dir, 'arc_easy.jsonl'), JSON.stringify({ query: 'Question: 2+2?', choices: ['3', '4', '5', '6'], gold: 1 }) + '\n');
    fs.writeFileSync(path.join(dir, 'winogrande.jsonl'), JSON.stringify({ context_options: ['A met B so A', 'A met B so B'], continuation: 'was happy.', gold: 1 }) + '\n');
    fs.mkdirSync(path.join(dir, 'hellaswag'));
    const hs = ['Cooking: A man cuts onions. he', '2', 'flies.', 'sings.', 'puts them in a pan.', 'sleeps.'].join('\n') + '\n';
    fs.writeFileSync(path.join(dir, 'hellaswag', 'hellaswag_val_full.part1.txt'), hs);
    fs.writeFileSync(path.join(dir, 'hellaswag', 'hellaswag_val_full.part2.txt'), hs);
    fs.writeFileSync(path.join(dir, 'hellaswag', 'hellaswag_val_full.part3.txt'), '');
    fs.writeFileSync(path.join(dir, 'lambada_openai.jsonl'), JSON.stringify({ context: 'He opened the', continuation: 'door' }) + '\n');

    const [piqa] = loadTaskDocs(TASKS.piqa, dir);
    expect(piqa).toEqual({ kind: 'choice', requests: [{ context: 'Question: open a jar\nAnswer:', continuation: ' twist' }, { context: 'Question: open a jar\nAnswer:', continuation: ' smash' }], choiceTexts: ['twist', 'smash'], gold: 0 });
    const [arc] = loadTaskDocs(TASKS.arc_easy, dir);
    expect(arc.kind === 'choice' && arc.requests[1]).toEqual({ context: 'Question: 2+2?\nAnswer:', continuation: ' 4' });
    const [wg] = loadTaskDocs(TASKS.winogrande, dir);
    expect(wg.kind === 'choice' && wg.requests.map((r) => r.context + r.continuation)).toEqual(['A met B so A was happy.', 'A met B so B was happy.']);
    const hsDocs = loadTaskDocs(TASKS.hellaswag, dir);
    expect(hsDocs).toHaveLength(2);
    expect(hsDocs[0].kind === 'choice' && hsDocs[0].gold).toBe(2);
    expect(hsDocs[0].kind === 'choice' && hsDocs[0].requests[2]).toEqual({ context: 'Cooking: A man cuts onions. he', continuation: ' puts them in a pan.' });
    expect(loadTaskDocs(TASKS.lambada, dir)).toEqual([{ kind: 'last-word', context: 'He opened the', continuation: ' door' }]);
  });

  it('name the file and row of a bad document', () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'piqa.jsonl'), JSON.stringify({ query: 'q', choices: ['a', 'b'], gold: 0 }) + '\n{"query": "q", "choices": ["a"], "gold": 0}\n');
    expect(() => loadTaskDocs(TASKS.piqa, dir)).toThrow(/piqa\.jsonl: row 2 has no valid "choices"/);
    fs.writeFileSync(path.join(dir, 'piqa.jsonl'), '{"query": "q", "choices": ["a", "b"], "gold": 5}\n');
    expect(() => loadTaskDocs(TASKS.piqa, dir)).toThrow(/row 1: gold 5 but 2 choices/);
    fs.writeFileSync(path.join(dir, 'piqa.jsonl'), '{not json\n');
    expect(() => loadTaskDocs(TASKS.piqa, dir)).toThrow(/piqa\.jsonl:1: not valid JSON/);
    expect(() => loadTaskDocs(TASKS.boolq, dir)).toThrow(/boolq\.jsonl: task file for "boolq" not found.*ENTROPRUNE_TASKS_DIR.*Zero-shot task files/);
  });

  it('HellaSwag as one file is the same as its three parts', () => {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'hellaswag'));
    const parts = TASKS.hellaswag.files.map((f) => fs.readFileSync(path.join(DATA_DIR, 'tasks', f)));
    fs.writeFileSync(path.join(dir, 'hellaswag', 'hellaswag_val_full.txt'), Buffer.concat(parts));
    const whole = loadTaskDocs(TASKS.hellaswag, dir);
    expect(whole.length).toBe(10042);
    expect(whole).toEqual(loadTaskDocs(TASKS.hellaswag, path.join(DATA_DIR, 'tasks')));
  });

  it('the shared task files load with the documented row counts', () => {
    const counts: Record<string, number> = { piqa: 1838, arc_easy: 2376, arc_challenge: 1172, openbookqa: 500, boolq: 3270, winogrande: 1267, hellaswag: 10042, lambada: 5153 };
    for (const [name, n] of Object.entries(counts)) expect(loadTaskDocs(TASKS[name], path.join(DATA_DIR, 'tasks')).length, name).toBe(n);
  });
});

describe('scoring on a real model (stories260K)', () => {
  const story = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';

  it('the model\'s own greedy story is greedy; log-likelihoods equal the perplexity path\'s summed NLL', async () => {
    const model = await loadModel(dataFile(STORIES_BIN));
    const tok = tokenizerFor(model);
    const context = 'Once upon a time, there was a little girl named';
    const reqs = [' Lily. She loved to play outside in the park.', ' Zxq. Blorp vandal quiz.'].map((continuation) => encodeRequest(tok, { context, continuation }, 512));
    const [good, bad] = await scoreEncoded(model, reqs, { batchTokens: 64 });
    expect(good.greedy).toBe(true);
    expect(bad.greedy).toBe(false);
    expect(good.logprob).toBeGreaterThan(bad.logprob + 20);
    // Independent path: evaluate() returns −log p(token t+1 | ..t) for a whole window.
    const seq = reqs[0].tokens;
    const nll = await model.handle.evaluate({ tokens: seq, nSeqs: 1, seqLen: seq.length, output: 'nll' }).promise;
    let want = 0;
    for (let t = reqs[0].target - 1; t < seq.length - 1; t++) want -= nll[t];
    expect(good.logprob).toBeCloseTo(want, 3);
    expect(tok.decode(seq)).toContain(story.slice(0, 40));
  });

  it('hand-made multiple-choice items with known answers score acc 1 (and 0 with the gold flipped)', async () => {
    const model = await loadModel(dataFile(STORIES_BIN));
    const tok = tokenizerFor(model);
    const dir = tempDir();
    const rows = [
      { query: 'Question: Once upon a time, there was a little girl named\n', choices: ['Lily.', 'quantum chromodynamics.'], gold: 0 },
      { query: 'Question: She loved to play outside in the\n', choices: ['xylophone zebra quartz.', 'park.'], gold: 1 },
    ];
    // The "Question:/Answer:" scaffold is not story text; the story model still prefers the story words.
    fs.writeFileSync(path.join(dir, 'piqa.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const r = await evaluateTask(model, tok, 'piqa', { tasksDir: dir });
    expect(r.docs).toBe(2);
    expect(r.acc.value).toBe(1);
    fs.writeFileSync(path.join(dir, 'piqa.jsonl'), rows.map((x) => JSON.stringify({ ...x, gold: 1 - x.gold })).join('\n') + '\n');
    expect((await evaluateTask(model, tok, 'piqa', { tasksDir: dir })).acc.value).toBe(0);
  });

  it('`eval tasks --json` runs the paper\'s five on seeded subsets, reproducibly', () => {
    const args = ['eval', 'tasks', dataFile(STORIES_BIN), '--tasks', 'paper,lambada', '--limit', '40', '--seed', '3', '--tasks-dir', path.join(DATA_DIR, 'tasks'), '--json'];
    const a = runCli(args);
    expect(a.code, a.stderr).toBe(0);
    const ja = JSON.parse(a.stdout);
    expect(ja.tasks.map((t: { task: string }) => t.task)).toEqual(['piqa', 'hellaswag', 'winogrande', 'arc_easy', 'arc_challenge', 'lambada']);
    for (const t of ja.tasks) {
      expect(t.docs).toBe(40);
      expect(t.acc.value).toBeGreaterThanOrEqual(0);
      expect(t.acc.value).toBeLessThanOrEqual(1);
    }
    expect(ja.tasks[5].ppl).toBeGreaterThan(1);
    const b = JSON.parse(runCli(args).stdout);
    expect(b.tasks.map((t: { acc: { value: number } }) => t.acc.value)).toEqual(ja.tasks.map((t: { acc: { value: number } }) => t.acc.value));
    const bad = runCli(['eval', 'tasks', dataFile(STORIES_BIN), '--tasks', 'piqa,mmlu']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/unknown task "mmlu"/);
  });

  it('task requests of a tokenizer.json model are encoded off the main thread, to the same ids as one by one', async () => {
    const model = await loadModel(dataFile(TINY_HF));
    const tok = tokenizerFor(model);
    expect(tok.kind).toBe('tokenizer.json');
    const docs = loadTaskDocs(TASKS.hellaswag, path.join(DATA_DIR, 'tasks')).slice(0, 60);
    const reqs = docs.flatMap((d) => (d.kind === 'choice' ? d.requests : [d]));
    expect(reqs.reduce((n, r) => n + 2 * r.context.length + r.continuation.length, 0)).toBeGreaterThan(65536); // above the in-place limit
    const together = await encodeRequests(tok, reqs, 96);
    expect(together.length).toBe(reqs.length);
    reqs.forEach((r, i) => {
      const alone = encodeRequest(tok, r, 96);
      expect(Array.from(together[i].tokens), `request ${i}`).toEqual(Array.from(alone.tokens));
      expect(together[i].target).toBe(alone.target);
    });
    expect(together.some((r) => r.tokens.length === 96)).toBe(true); // some were cut to the context from the left
  });

  it('selectDocs rejects a bad limit', () => {
    expect(() => selectDocs([], 0, 0)).toThrow(/limit must be a positive integer/);
  });
});

describe('acc_norm through the task pipeline', () => {
  it('normalises by characters (Python len), checked against log-probabilities computed from the logits', async () => {
    const model = await loadModel(dataFile(STORIES_GGUF));
    const tok = tokenizerFor(model);
    const t = await prepareTask(model, tok, 'arc_easy', { tasksDir: path.join(DATA_DIR, 'tasks'), limit: 120, seed: 3 });
    const result = await scoreTask(model, t);
    // Independently: each request's continuation log-probability from the full logits of its tokens.
    const V = model.info.vocab;
    const logprob: number[] = [];
    for (const r of t.encoded) {
      const lg = await model.handle.evaluate({ tokens: r.tokens, nSeqs: 1, seqLen: r.tokens.length, output: 'logits' }).promise;
      let s = 0;
      for (let p = r.target; p < r.tokens.length; p++) {
        const row = lg.subarray((p - 1) * V, p * V);
        let mx = -Infinity;
        for (const x of row) mx = Math.max(mx, x);
        let z = 0;
        for (const x of row) z += Math.exp(x - mx);
        s += row[r.tokens[p]] - mx - Math.log(z);
      }
      logprob.push(s);
    }
    const byChars: number[] = [];
    const byTokens: number[] = [];
    let at = 0;
    for (const d of t.docs) {
      if (d.kind !== 'choice') continue;
      const lps = d.requests.map((_, i) => logprob[at + i]);
      const tokens = d.requests.map((_, i) => t.encoded[at + i].tokens.length - t.encoded[at + i].target);
      at += d.requests.length;
      const best = (xs: number[]) => xs.indexOf(Math.max(...xs));
      byChars.push(best(lps.map((lp, i) => lp / [...d.choiceTexts[i]].length)) === d.gold ? 1 : 0); // code points, as Python's len
      byTokens.push(best(lps.map((lp, i) => lp / tokens[i])) === d.gold ? 1 : 0);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(result.accNorm!.value).toBeCloseTo(mean(byChars), 12);
    // on these documents the two normalisations disagree, so dividing by tokens instead would fail above
    expect(mean(byTokens)).not.toBeCloseTo(mean(byChars), 12);
  });
});
