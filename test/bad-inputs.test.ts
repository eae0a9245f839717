// The bad-input corpus (test/bad-inputs/make-corpus.mjs) run through the CLI as a user would: every case
// ends with a non-zero exit and a message that names the file and the problem, leaves every input byte for
// byte as it was, and leaves no output and no temporary file behind.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { analyzeToFile, loadModel, plan, readAnalysis, tokenizerFor, writePlan } from '../lib';
// @ts-expect-error — a plain ES module shared with the command line
import { hfFolderCases, makeCorpus, planCases } from './bad-inputs/make-corpus.mjs';
import { CLI, DATA_DIR, dataFile, STORIES_GGUF, TINY_HF, tempDir } from './helpers/data';

interface Case {
  name: string;
  args: string[];
  expect: string;
  code: number;
  inputs: string[];
  outputs: string[];
  fileSizeLimitKb?: number;
  /** a pattern stdout must match (a check's printed verdict) */
  stdout?: string;
  env?: Record<string, string>;
  /** folders whose file names and contents must be the same afterwards (nothing added, nothing changed) */
  unchangedDirs?: string[];
  /** a refusal that needs no model work must come within this many seconds */
  maxSeconds?: number;
}

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const corpus: Case[] = makeCorpus(dir, DATA_DIR).cases;
let goodPlan = '';
let hfPlan = '';

beforeAll(async () => {
  const model = await loadModel(dataFile(STORIES_GGUF));
  const af = path.join(dir, 'stories.analysis.json');
  await analyzeToFile(model, af, { calib: dataFile('text/wikitext-2-raw/wiki.valid.raw'), tokenizer: tokenizerFor(model), samples: 8, seqLen: 128 });
  goodPlan = path.join(dir, 'good.plan.json');
  writePlan(goodPlan, plan(readAnalysis(af).analysis, { ratio: 0.3, analysisFile: af }));
  const hf = await loadModel(dataFile(TINY_HF));
  const hfAnalysis = path.join(dir, 'hf.analysis.json');
  await analyzeToFile(hf, hfAnalysis, { calib: dataFile('text/wikitext-2-raw/wiki.valid.raw'), tokenizer: tokenizerFor(hf), samples: 8, seqLen: 128, sensitivity: false });
  hfPlan = path.join(dir, 'hf.plan.json');
  writePlan(hfPlan, plan(readAnalysis(hfAnalysis).analysis, { ratio: 0.3, analysisFile: hfAnalysis }));
});

/** sha256 of a file, or of every file in a directory (names and contents). */
function sha(f: string): string {
  const h = createHash('sha256');
  if (fs.statSync(f).isDirectory()) for (const n of fs.readdirSync(f).sort()) h.update(n).update(sha(path.join(f, n)));
  else h.update(fs.readFileSync(f));
  return h.digest('hex');
}

function tempFilesUnder(d: string): string[] {
  if (!fs.existsSync(d) || !fs.statSync(d).isDirectory()) return [];
  return fs.readdirSync(d, { recursive: true }).map(String).filter((f) => /\.tmp-\d+$/.test(path.basename(f)));
}

function run(c: Case) {
  const before = new Map(c.inputs.map((f) => [f, sha(f)]));
  const dirsBefore = new Map((c.unchangedDirs ?? []).map((d) => [d, sha(d)]));
  const started = Date.now();
  const r = c.fileSizeLimitKb
    ? spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f ${c.fileSizeLimitKb}; exec "$0" "$@"`, process.execPath, CLI, ...c.args], { encoding: 'utf8', timeout: 120_000 })
    : spawnSync(process.execPath, [CLI, ...c.args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...c.env } });
  expect(r.status, `${c.name}\n${r.stderr}`).toBe(c.code);
  if (c.maxSeconds) expect((Date.now() - started) / 1000, `${c.name}: took too long to refuse`).toBeLessThan(c.maxSeconds);
  expect(r.stderr, c.name).toMatch(new RegExp(c.expect));
  if (c.stdout) expect(r.stdout, c.name).toMatch(new RegExp(c.stdout));
  expect(r.stderr, c.name).not.toMatch(/internal error|Segmentation|Aborted|at .*\.js:\d+/);
  for (const [f, h] of before) expect(sha(f), `${c.name}: input ${f} changed`).toBe(h);
  for (const [d, h] of dirsBefore) expect(sha(d), `${c.name}: folder ${d} changed (${fs.readdirSync(d).join(', ')})`).toBe(h);
  for (const o of c.outputs) expect(fs.existsSync(o), `${c.name}: ${o} was written`).toBe(false);
  for (const o of [dir, ...c.outputs.map((x) => path.dirname(x))]) expect(tempFilesUnder(o), `${c.name}: temporary files left`).toEqual([]);
}

describe('bad inputs', () => {
  it('the corpus has at least 30 cases', () => {
    expect(corpus.length + 10).toBeGreaterThanOrEqual(30); // + the 10 plan/output cases below
    expect(corpus.length).toBeGreaterThanOrEqual(25);
  });
  for (const c of corpus) it(c.name, () => run(c));
  it('plans and outputs: another model\'s plan, impossible edits, existing / unwritable outputs, a full disk', () => {
    const cases: Case[] = planCases(dir, DATA_DIR, goodPlan);
    expect(cases.length).toBeGreaterThanOrEqual(10);
    for (const c of cases) run(c);
  });
  it('an HF input folder is never replaced whole, through a linked parent or a link to it', () => {
    const cases: Case[] = hfFolderCases(dir, DATA_DIR, hfPlan);
    expect(cases.length).toBe(2);
    for (const c of cases) run(c);
  });
});
