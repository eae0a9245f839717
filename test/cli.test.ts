// The CLI as users run it: JSON output, exit codes, and clear errors for bad input that name the file.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import type { PruningPlan } from '../lib';
import { runCli } from './helpers/cli';
import { dataFile, STORIES_BIN, STORIES_GGUF, tempDir, TINY_HF, TINYSTORIES_TEXT } from './helpers/data';

const scratch = tempDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('entroprune eval ppl', () => {
  it('prints one JSON object with ppl, tokens and seqLen', () => {
    const r = runCli(['eval', 'ppl', dataFile(STORIES_GGUF), '--text', dataFile(TINYSTORIES_TEXT), '--seq-len', '256', '--max-tokens', '4096', '--json', '--threads', '2']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]);
    expect(j.seqLen).toBe(256);
    expect(j.tokens).toBe(4096);
    expect(j.windows).toBe(16);
    expect(j.ppl).toBeGreaterThan(2);
    expect(j.ppl).toBeLessThan(8);
    expect(j.threads).toBe(2);
  });

  it('works on a Hugging Face directory with tokenizer.json', () => {
    const r = runCli(['eval', 'ppl', dataFile(TINY_HF), '--text', dataFile(TINYSTORIES_TEXT), '--seq-len', '128', '--max-tokens', '2048', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.tokenizer).toMatch(/tokenizer\.json$/);
    expect(j.ppl).toBeGreaterThan(1);
  });

  it('prints a human summary without --json', () => {
    const r = runCli(['eval', 'ppl', dataFile(STORIES_BIN), '--text', dataFile(TINYSTORIES_TEXT), '--seq-len', '128', '--max-tokens', '1024']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^perplexity \d+\.\d{4} /);
  });

  it('--version and --help', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));
    expect(runCli(['--version']).stdout.trim()).toBe(pkg.version);
    const help = runCli(['eval', 'ppl', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--seq-len');
  });

  it('usage errors exit 2', () => {
    expect(runCli(['eval', 'ppl', dataFile(STORIES_GGUF)]).code).toBe(2); // --text missing
    expect(runCli(['eval', 'ppl', dataFile(STORIES_GGUF), '--text', 'x', '--seq-len', 'abc']).code).toBe(2);
    for (const n of ['-1', '2.5']) {
      const bad = runCli(['compare', dataFile(STORIES_GGUF), '--calib', 'x', '--eval', 'y', '--generation-prompts', n]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/generation-prompts must be an integer >= 0/);
    }
  });

  it('usage errors print the error and a one-line hint, with near misses named', () => {
    // a mistyped required option is reported missing: the near miss is named as well
    const typo = runCli(['prune', dataFile(STORIES_GGUF), '--ratoi', '0.3', '--calib', 'x', '-o', 'y.gguf']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/required option '--ratio <r>' not specified/);
    expect(typo.stderr).toMatch(/--ratoi is not an option of prune: did you mean --ratio\?/);
    expect(typo.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(4); // not the whole help
    const unknown = runCli(['plan', 'a.json', '--ratio', '0.3', '--importanc', 'entropy']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Did you mean --importance\?/);
    expect(runCli(['pruen']).stderr).toMatch(/Did you mean prune\?/);
  });
});

describe('bad input: clear errors naming the file, exit code 1, inputs untouched', () => {
  const text = () => dataFile(TINYSTORIES_TEXT);

  function expectError(args: string[], ...fragments: (string | RegExp)[]) {
    const r = runCli(args);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    for (const f of fragments) expect(r.stderr).toMatch(f);
    expect(r.stderr).not.toMatch(/internal error|Segmentation|Aborted/);
    return r;
  }

  it('truncated llama2.c checkpoint', () => {
    const file = path.join(scratch, 'truncated.bin');
    fs.writeFileSync(file, fs.readFileSync(dataFile(STORIES_BIN)).subarray(0, 500_000));
    fs.copyFileSync(dataFile('models/stories260K/tok512.bin'), path.join(scratch, 'tok512.bin'));
    const before = fs.readFileSync(file);
    expectError(['eval', 'ppl', file, '--text', text()], file, /truncated/);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });

  it('truncated GGUF', () => {
    const file = path.join(scratch, 'truncated.gguf');
    fs.writeFileSync(file, fs.readFileSync(dataFile(STORIES_GGUF)).subarray(0, 600_000));
    expectError(['eval', 'ppl', file, '--text', text()], file, /outside the file/);
  });

  it('GGUF whose header lies about a tensor offset', () => {
    const buf = Buffer.from(fs.readFileSync(dataFile(STORIES_GGUF)));
    // The last tensor entry ends right before the data section; its u64 offset is the last 8 header bytes
    // before padding. Find 'output.weight' entry (the last one) and set its offset far beyond the file.
    const name = Buffer.from('output.weight');
    const at = buf.lastIndexOf(name, 14176);
    expect(at).toBeGreaterThan(0);
    const nd = buf.readUInt32LE(at + name.length);
    const offsetPos = at + name.length + 4 + nd * 8 + 4;
    buf.writeBigUInt64LE(BigInt(1 << 30), offsetPos);
    const file = path.join(scratch, 'lying.gguf');
    fs.writeFileSync(file, buf);
    expectError(['eval', 'ppl', file, '--text', text()], file, /output\.weight/, /outside the file/);
  });

  it('safetensors with an unknown dtype names the tensor', () => {
    const dir = path.join(scratch, 'hf-bad-dtype');
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(dataFile(TINY_HF), 'config.json'), path.join(dir, 'config.json'));
    const header = Buffer.from(JSON.stringify({ 'model.norm.weight': { dtype: 'F4X', shape: [128], data_offsets: [0, 512] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([len, header, Buffer.alloc(512)]));
    expectError(['eval', 'ppl', dir, '--text', text()], /model\.safetensors/, /model\.norm\.weight/, /unknown dtype 'F4X'/);
  });

  it('missing tokenizer says how to pass one', () => {
    const file = path.join(scratch, 'lonely', 'model.bin');
    fs.mkdirSync(path.dirname(file));
    fs.copyFileSync(dataFile(STORIES_BIN), file);
    expectError(['eval', 'ppl', file, '--text', text()], file, /missing tokenizer/, /--tokenizer/);
    // and with it given explicitly the same file works
    const ok = runCli(['eval', 'ppl', file, '--text', text(), '--tokenizer', dataFile('models/stories260K/tok512.bin'), '--seq-len', '64', '--max-tokens', '256', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('a tokenizer that does not belong to the model', () => {
    expectError(['eval', 'ppl', dataFile(STORIES_GGUF), '--text', text(), '--tokenizer', path.join(dataFile(TINY_HF), 'tokenizer.json')], /2048 tokens/, /vocabulary of 512/);
  });

  it('missing model, missing text, empty text, too-short text', () => {
    expectError(['eval', 'ppl', path.join(scratch, 'nope.gguf'), '--text', text()], /nope\.gguf/, /no such file/);
    expectError(['eval', 'ppl', dataFile(STORIES_GGUF), '--text', path.join(scratch, 'none.txt')], /none\.txt/, /not found/);
    const empty = path.join(scratch, 'empty.txt');
    fs.writeFileSync(empty, '  \n');
    expectError(['eval', 'ppl', dataFile(STORIES_GGUF), '--text', empty], /empty\.txt/, /empty/);
    const short = path.join(scratch, 'short.txt');
    fs.writeFileSync(short, 'Once upon a time.');
    expectError(['eval', 'ppl', dataFile(STORIES_GGUF), '--text', short, '--seq-len', '512'], /fewer than one window/);
  });
});

describe('entroprune verify', () => {
  it('"vs original" fails (exit 1) when the pruned perplexity exceeds the stated ratio, and passes under a looser one', () => {
    // Dropping attention layers breaks stories260K (perplexity ×25 and more on real text): a check that must fail.
    const out = path.join(scratch, 'broken.gguf');
    const p = runCli(['prune', dataFile(STORIES_GGUF), '--ratio', '0.3', '--method', 'layer-drop', '--calib', dataFile(TINYSTORIES_TEXT), '--samples', '8', '--seq-len', '128', '--no-sensitivity', '--no-verify', '-o', out]);
    expect(p.code, p.stderr).toBe(0);
    const strict = runCli(['verify', out, '--against', dataFile(STORIES_GGUF), '--max-ppl-ratio', '2', '--json']);
    expect(strict.code, strict.stderr).toBe(1);
    const rows = JSON.parse(strict.stdout.trim().split('\n')[0]) as { runtime: string; status: string; detail: string }[];
    const vs = rows.find((r) => r.runtime === 'vs original')!;
    expect(vs.status).toBe('fail');
    expect(vs.detail).toMatch(/fails above 2×/);
    const ratio = Number(/\(([\d.]+)× the original/.exec(vs.detail)![1]);
    expect(ratio).toBeGreaterThan(2);
    const loose = runCli(['verify', out, '--against', dataFile(STORIES_GGUF), '--max-ppl-ratio', String(Math.ceil(ratio) + 1), '--json']);
    const looseRows = JSON.parse(loose.stdout.trim().split('\n')[0]) as { runtime: string; status: string }[];
    expect(looseRows.find((r) => r.runtime === 'vs original')!.status).toBe('pass');
  });
});

describe('entroprune prune: the measured refinement', () => {
  it('refines by default (the plan records its candidates, the summary names the one chosen); --no-refine plans from the damage model alone', () => {
    const base = ['prune', dataFile(STORIES_GGUF), '--ratio', '0.2', '--calib', dataFile(TINYSTORIES_TEXT), '--samples', '8', '--seq-len', '128', '--no-verify'];
    const refined = path.join(scratch, 'refined.gguf');
    const r = runCli([...base, '-o', refined]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/refinement: \d+ plans measured on the sensitivity windows, chosen "[^"]+" by KL from the unpruned model \(KL [\d.]+ against [\d.]+ as planned; NLL [\d.]+ against [\d.]+, unpruned [\d.]+\)/);
    const p = JSON.parse(fs.readFileSync(path.join(scratch, 'refined.plan.json'), 'utf8')) as PruningPlan;
    expect(p.refinement!.candidates[0].name).toBe('planned');
    expect(p.refinement!.candidates.map((c) => c.name)).toContain('uniform ratios');
    expect(p.refinement!.criterion).toBe('kl');
    expect(p.refinement!.candidates.find((c) => c.name === p.refinement!.chosen)!.kl).toBe(Math.min(...p.refinement!.candidates.map((c) => c.kl)));
    const plain = path.join(scratch, 'unrefined.gguf');
    const u = runCli([...base, '--no-refine', '-o', plain]);
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).not.toMatch(/refinement:/);
    expect((JSON.parse(fs.readFileSync(path.join(scratch, 'unrefined.plan.json'), 'utf8')) as PruningPlan).refinement).toBeUndefined();
  });
});

describe('one writer per output, and no leftovers', () => {
  it('a live lock refuses a second writer; a killed run\'s lock and temporaries are reported and removed', () => {
    const out = path.join(scratch, 'locked.gguf');
    const args = ['prune', dataFile(STORIES_GGUF), '--ratio', '0.3', '--calib', dataFile(TINYSTORIES_TEXT), '--samples', '8', '--seq-len', '128', '--no-sensitivity', '--no-verify', '-o', out];
    // a live writer (this test process) holds the output
    const lock = path.join(scratch, '.locked.gguf.lock');
    fs.writeFileSync(lock, String(process.pid));
    const refused = runCli(args);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`locked\\.gguf: another entroprune run \\(pid ${process.pid}\\) is writing this output`));
    expect(fs.existsSync(out)).toBe(false);
    // a killed writer: its pid is gone (pid 2^22 + 1 is above Linux's default pid_max), its temporary remains
    const dead = 4194305;
    fs.writeFileSync(lock, String(dead));
    const tmp = path.join(scratch, `.locked.gguf.tmp-${dead}`);
    fs.writeFileSync(tmp, 'half a model');
    const ok = runCli(args);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/removed .*\.locked\.gguf\.tmp-4194305, left by an interrupted run \(pid 4194305\)/);
    expect(ok.stderr).toMatch(/removed .*\.locked\.gguf\.lock, left by an interrupted run \(pid 4194305\)/);
    expect(fs.existsSync(tmp)).toBe(false);
    expect(fs.existsSync(lock)).toBe(false);
    expect(fs.existsSync(out)).toBe(true);
  });
});
