// Ctrl-C and SIGTERM during real runs: the native work stops promptly, the command exits with 130, the
// temporary output is removed and no partial output remains; an interrupted compare keeps its finished cells.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { analyzeToFile, loadModel, plan, readAnalysis, tokenizerFor, writePlan } from '../lib';
import { native } from '../lib/native';
import { runCli } from './helpers/cli';
import { CLI, dataFile, STORIES_BIN, tempDir, TINY_HF, TINYSTORIES_TEXT } from './helpers/data';

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const big = path.join(dir, 'big.gguf');
const bigPlan = path.join(dir, 'big.plan.json');
const calib = dataFile('text/wikitext-2-raw/wiki.valid.raw');

beforeAll(async () => {
  // ~95 M parameters (≈ 380 MB): analysis and writing take long enough to be interrupted midway.
  native().writeSyntheticGguf({ dim: 1024, vocab: 2048, headDim: 64, layers: Array.from({ length: 6 }, () => ({ nHead: 16, nKvHead: 8, ffn: 3072 })), seed: 4 }, big);
  const model = await loadModel(big);
  const af = path.join(dir, 'big.analysis.json');
  await analyzeToFile(model, af, { calib, tokenizer: tokenizerFor(model), samples: 2, seqLen: 32 });
  writePlan(bigPlan, plan(readAnalysis(af).analysis, { ratio: 0.2, granularity: 'width-only', analysisFile: af }));
});

interface Run {
  code: number | null;
  stderr: string;
  msAfterSignal: number;
}

/** Start the CLI, send `signal` once `ready()` holds, and report how the process ended. */
function interrupt(args: string[], signal: NodeJS.Signals, ready: () => boolean, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let sentAt = 0;
    const started = Date.now();
    const poll = setInterval(() => {
      if (!sentAt && ready()) {
        sentAt = Date.now();
        child.kill(signal);
      } else if (Date.now() - started > timeoutMs) {
        clearInterval(poll);
        child.kill('SIGKILL');
        reject(new Error(`never became ready to interrupt: ${stderr}`));
      }
    }, 5);
    child.on('exit', (code) => {
      clearInterval(poll);
      resolve({ code, stderr, msAfterSignal: sentAt ? Date.now() - sentAt : -1 });
    });
  });
}

const leftovers = (d: string) => fs.readdirSync(d).filter((f) => f.includes('.tmp-'));

describe('interrupts', () => {
  it('SIGINT during analyze: exit 130 within a few seconds, no analysis written', async () => {
    const out = path.join(dir, 'int.analysis.json');
    // A short calibration text: tokenizing runs on the main thread, so the signal lands in the native analysis.
    const text = path.join(dir, 'calib.txt');
    fs.writeFileSync(text, fs.readFileSync(calib, 'utf8').slice(0, 30_000));
    const t0 = Date.now();
    const r = await interrupt(['analyze', big, '--calib', text, '--samples', '64', '--seq-len', '128', '--batch', '4', '-o', out, '--device', 'cpu'], 'SIGINT', () => Date.now() - t0 > 2500);
    expect(r.code, r.stderr).toBe(130);
    expect(r.msAfterSignal).toBeGreaterThan(0);
    // cancellation is checked between sublayers: with 4 × 128 tokens per call that is well under a second
    expect(r.msAfterSignal).toBeLessThan(8000);
    expect(r.stderr).toMatch(/entroprune: (cancelled|interrupted)/);
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(dir)).toEqual([]);
  });

  it('SIGINT while a tokenizer.json model tokenizes its calibration text: exit 130 at once', async () => {
    const out = path.join(dir, 'tok.analysis.json');
    const t0 = Date.now();
    // TinyStories-656K's tokenizer.json takes ~13 s on its 800 KB validation text (off the main thread)
    const r = await interrupt(['analyze', dataFile(TINY_HF), '--calib', dataFile(TINYSTORIES_TEXT), '-o', out], 'SIGINT', () => Date.now() - t0 > 2500);
    expect(r.code, r.stderr).toBe(130);
    expect(r.msAfterSignal).toBeLessThan(2000);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('SIGINT while eval ppl tokenizes a long text with a tokenizer.json model: exit 130 at once', async () => {
    const t0 = Date.now();
    const r = await interrupt(['eval', 'ppl', dataFile(TINY_HF), '--text', dataFile(TINYSTORIES_TEXT), '--device', 'cpu'], 'SIGINT', () => Date.now() - t0 > 2500);
    expect(r.code, r.stderr).toBe(130);
    expect(r.msAfterSignal).toBeLessThan(2000);
  });

  it('SIGINT while eval tasks tokenizes a task set with a tokenizer.json model: exit 130 at once', async () => {
    const t0 = Date.now();
    const r = await interrupt(['eval', 'tasks', dataFile(TINY_HF), '--tasks', 'hellaswag', '--tasks-dir', dataFile('tasks'), '--device', 'cpu'], 'SIGINT',
      () => Date.now() - t0 > 2500);
    expect(r.code, r.stderr).toBe(130);
    expect(r.msAfterSignal).toBeLessThan(2000);
  });

  it('SIGTERM while apply is writing: the temporary file is removed, no output appears', async () => {
    const out = path.join(dir, 'cut.gguf');
    const r = await interrupt(['apply', big, bigPlan, '-o', out, '--no-verify'], 'SIGTERM', () => leftovers(dir).some((f) => f.startsWith('.cut.gguf.tmp-')));
    expect(r.code, r.stderr).toBe(130);
    expect(r.msAfterSignal).toBeLessThan(8000);
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(dir)).toEqual([]);
    // the input is intact: it still loads and the same apply completes
    const ok = spawn(process.execPath, [CLI, 'apply', big, bigPlan, '-o', out, '--no-verify']);
    expect(await new Promise((res) => ok.on('exit', res))).toBe(0);
    expect(fs.statSync(out).size).toBeGreaterThan(1e8);
  });

  it('SIGINT during compare: finished cells are kept and valid, the run resumes from them', async () => {
    const out = path.join(dir, 'cmp');
    const args = ['compare', dataFile(STORIES_BIN), '--calib', calib, '--eval', dataFile(TINYSTORIES_TEXT), '--ratios', '0.3,0.4,0.5', '--methods', 'entropy,uniform',
      '--samples', '8', '--seq-len', '128', '--eval-seq-len', '256', '--eval-max-tokens', '8192', '--tasks', 'none', '-o', out, '--device', 'cpu'];
    const cells = () => {
      try {
        return Object.keys(JSON.parse(fs.readFileSync(path.join(out, 'compare.json'), 'utf8')).cells).length;
      } catch {
        return 0;
      }
    };
    const r = await interrupt(args, 'SIGINT', () => cells() >= 3);
    expect(r.code, r.stderr).toBe(130);
    const kept = cells();
    expect(kept).toBeGreaterThanOrEqual(3);
    expect(kept).toBeLessThan(7);
    expect(leftovers(out)).toEqual([]);
    expect(fs.readdirSync(path.join(out, 'models'))).toEqual([]);
    const done = JSON.parse(fs.readFileSync(path.join(out, 'compare.json'), 'utf8')).cells;
    const again = runCli(args);
    expect(again.code, again.stderr).toBe(0);
    const redone = (again.stderr.match(/^== .*$/gm) ?? []).length;
    expect(redone).toBe(7 - kept); // only the unfinished cells ran
    const after = JSON.parse(fs.readFileSync(path.join(out, 'compare.json'), 'utf8')).cells;
    expect(Object.keys(after)).toHaveLength(7);
    for (const k of Object.keys(done)) expect(after[k]).toEqual(done[k]);
  }, 240_000);

  it('SIGINT while synth writes a 70B-shaped block: stopped between tensors, nothing left behind', async () => {
    const out = path.join(dir, 'l70.gguf');
    // one block of llama2-70b plus its 32000 × 8192 embeddings and head: ~1.4 GB in BF16, seconds to write
    const r = await interrupt(['synth', 'llama2-70b', '--layers', '1', '-o', out], 'SIGINT', () => leftovers(dir).some((f) => f.startsWith('.l70.gguf.tmp-')));
    expect(r.code, r.stderr).toBe(130);
    expect(r.msAfterSignal).toBeLessThan(8000);
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(dir)).toEqual([]);
    const again = runCli(['synth', 'llama2-70b', '-o', big]);  // an existing output is never replaced without --force
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/big\.gguf: already exists \(pass --force/);
  });
});
