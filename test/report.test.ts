// compare (resumable) and the HTML report, checked in a real headless browser; progress output rules.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inflateSync } from 'node:zlib';

import { afterAll, describe, expect, it } from 'vitest';

import { ProgressBar, progressLine } from '../lib/util/progress';
import { dumpDom, screenshot } from './helpers/browser';
import { runCli } from './helpers/cli';
import { dataFile, DATA_DIR, STORIES_BIN, tempDir, TINYSTORIES_TEXT } from './helpers/data';

const scratch = tempDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Share of non-white pixels in an 8-bit RGB(A) PNG, decoded here (filter types 0–4) to check it is not blank. */
function inkShare(png: Buffer): number {
  const width = png.readUInt32BE(16), height = png.readUInt32BE(20), colorType = png[25];
  const channels = colorType === 6 ? 4 : 3;
  const idat: Buffer[] = [];
  for (let off = 8; off < png.length; ) {
    const len = png.readUInt32BE(off);
    const type = png.toString('ascii', off + 4, off + 8);
    if (type === 'IDAT') idat.push(png.subarray(off + 8, off + 8 + len));
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const prev = Buffer.alloc(stride), cur = Buffer.alloc(stride);
  let ink = 0;
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? cur[x - channels] : 0, b = prev[x], c = x >= channels ? prev[x - channels] : 0;
      const v = raw[y * (stride + 1) + 1 + x];
      const pr = (() => { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c); return pa <= pb && pa <= pc ? a : pb <= pc ? b : c; })();
      cur[x] = (v + [0, a, b, (a + b) >> 1, pr][f]) & 255;
    }
    for (let x = 0; x < width; x++) if (cur[x * channels] < 200 || cur[x * channels + 1] < 200 || cur[x * channels + 2] < 200) ink++;
    cur.copy(prev);
  }
  return ink / (width * height);
}

describe('compare', () => {
  const out = path.join(scratch, 'cmp');
  const report = path.join(scratch, 'compare.html');
  const args = [
    'compare', dataFile(STORIES_BIN), '--calib', dataFile('text/wikitext-2-raw/wiki.valid.raw'), '--eval', dataFile(TINYSTORIES_TEXT),
    '--ratios', '0.3,0.5', '--methods', 'entropy,uniform,block-drop', '--samples', '16', '--seq-len', '128', '--eval-seq-len', '256',
    '--eval-max-tokens', '4096', '--tasks', 'piqa,arc_easy', '--limit', '20', '--tasks-dir', path.join(DATA_DIR, 'tasks'), '-o', out, '--device', 'cpu',
    '--generation-prompts', '12',
  ];

  it('prunes and evaluates every method × ratio and prints the table', () => {
    const r = runCli([...args, '--report', report]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/method\s+ratio\s+params\s+ppl:tinystories_validation_head\s+piqa\s+arc_easy\s+avg\s+rep-4\s+dist-2\s+loops\s+speed-up/);
    for (const m of ['original', 'entropy', 'uniform', 'block-drop']) expect(lines.some((l) => l.startsWith(m))).toBe(true);
    const state = JSON.parse(fs.readFileSync(path.join(out, 'compare.json'), 'utf8'));
    expect(Object.keys(state.cells).sort()).toEqual(['block-drop@0.3', 'block-drop@0.5', 'entropy@0.3', 'entropy@0.5', 'original@0', 'uniform@0.3', 'uniform@0.5']);
    for (const c of Object.values(state.cells) as { ppl: number[]; tasks: unknown[]; achievedRatio: number; ratio: number; method: string }[]) {
      expect(c.ppl[0]).toBeGreaterThan(1);
      expect(c.tasks).toHaveLength(2);
      // greedy continuations of the 12 held-out prompts asked for (default 8), with their repetition figures
      const g = (c as unknown as { generation: { prompts: number; repeat4: number; longestRun: number; continuations: number[][] } }).generation;
      expect(g.prompts).toBe(12);
      expect(g.continuations).toHaveLength(12);
      expect(g.repeat4).toBeGreaterThanOrEqual(0);
      expect(g.longestRun).toBeGreaterThanOrEqual(1);
      // whole blocks come in steps of 1/5 of the model; the other methods hit the target
      if (c.method !== 'original') expect(Math.abs(c.achievedRatio - c.ratio)).toBeLessThan(c.method === 'block-drop' ? 0.2 + 1e-9 : 0.02);
    }
    // pruning hurts: every pruned model has a higher perplexity than the original
    const orig = state.cells['original@0'].ppl[0];
    for (const k of Object.keys(state.cells)) if (k !== 'original@0') expect(state.cells[k].ppl[0]).toBeGreaterThan(orig);
    expect(fs.readdirSync(path.join(out, 'models'))).toEqual([]); // pruned models removed unless --keep-models
    // not a terminal: no progress bars on stderr
    expect(r.stderr).not.toMatch(/\r/);
  });

  it('resumes: finished cells are not redone, a lost cell is', () => {
    const file = path.join(out, 'compare.json');
    const before = JSON.parse(fs.readFileSync(file, 'utf8'));
    const again = runCli(args);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/== (analyze|original|entropy|uniform|block-drop)/);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).cells).toEqual(before.cells);
    // as if the run had been killed during "uniform 50 %"
    const lost = before.cells['uniform@0.5'];
    delete before.cells['uniform@0.5'];
    fs.writeFileSync(file, JSON.stringify(before));
    const resumed = runCli(args);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr.match(/^== .*$/gm)).toEqual(['== uniform 50 %']);
    const after = JSON.parse(fs.readFileSync(file, 'utf8'));
    // the redone cell reproduces the lost one (plans and perplexity are deterministic)
    expect(after.cells['uniform@0.5'].ppl[0]).toBeCloseTo(lost.ppl[0], 6);
    expect(after.cells['uniform@0.5'].tasks.map((t: { acc: { value: number } }) => t.acc.value)).toEqual(lost.tasks.map((t: { acc: { value: number } }) => t.acc.value));
    expect(after.cells['entropy@0.3']).toEqual(before.cells['entropy@0.3']);
  });

  it('refuses to mix a run with other settings into the same directory', () => {
    const r = runCli(args.map((a) => (a === '0.3,0.5' ? '0.3,0.4' : a)));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/compare\.json holds a comparison with other settings/);
  });

  it('the HTML report is self-contained and every plot renders in headless chromium', () => {
    const html = fs.readFileSync(report, 'utf8');
    expect(html).not.toMatch(/(src|href)\s*=\s*["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(/);
    const dom = dumpDom(report);
    const plots = Number(/data-plots="(\d+)"/.exec(dom)?.[1]);
    const rendered = Number(/data-plots-rendered="(\d+)"/.exec(dom)?.[1]);
    // 2 compare lines charts + speed, TE, block ratios, 2 ratios × (heads + channels), entropy histograms
    expect(plots).toBeGreaterThanOrEqual(10);
    expect(rendered).toBe(plots);
    for (const id of ['cmp-ppl-0', 'cmp-acc', 'cmp-speed', 'te', 'block-ratios', 'heads-0', 'channels-0', 'ent-channel-0'])
      expect(dom, id).toMatch(new RegExp(`id="${id}"[^>]*data-rendered="yes"`));
    const png = path.join(scratch, 'compare.png');
    screenshot(report, png);
    expect(inkShare(fs.readFileSync(png))).toBeGreaterThan(0.05);
  });
});

describe('prune --report', () => {
  it('evaluates before and after and writes a report whose plots render', () => {
    const out = path.join(scratch, 'p30.gguf');
    const report = path.join(scratch, 'prune.html');
    const r = runCli(['prune', dataFile(STORIES_BIN), '--ratio', '0.3', '--calib', dataFile('text/wikitext-2-raw/wiki.valid.raw'), '--samples', '16', '--seq-len', '128',
      '-o', out, '--no-verify', '--report', report, '--eval', dataFile(TINYSTORIES_TEXT), '--eval-seq-len', '256', '--eval-max-tokens', '4096', '--device', 'cpu',
      '--generation-prompts', '5']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/report written to/);
    expect(r.stdout).toMatch(/\d+\/5 looping/); // the 5 greedy continuations asked for (default 8)
    const dom = dumpDom(report);
    expect(dom).toMatch(/id="ba-ppl"[^>]*data-rendered="yes"/);
    expect(dom).toMatch(/id="ba-speed"[^>]*data-rendered="yes"/);
    expect(Number(/data-plots-rendered="(\d+)"/.exec(dom)?.[1])).toBe(Number(/data-plots="(\d+)"/.exec(dom)?.[1]));
    expect(dom).toMatch(/<td>original<\/td>/);
    // the default (marginal) plan forms no groups: its units are drawn as kept / removed, by its own ranking
    // (the contribution, with the refit-aware damage the analysis recorded)
    expect(dom).toMatch(/Block 0: channel residual contribution \(kept \/ removed\)/);
    expect(dom).not.toMatch(/Block 0: channel entropy/);
    // the default prune refines its plan: the report lists the candidates it measured, the chosen one marked
    expect(dom).toMatch(/The measured refinement of the plan/);
    expect(dom).toMatch(/<td>planned( \(chosen\))?<\/td>/);
    expect(dom).toMatch(/\(chosen\)<\/td>/);
  });
});

describe('progress bars', () => {
  const fakeStream = (isTTY: boolean) => {
    const writes: string[] = [];
    return { stream: { isTTY, write: (s: string) => writes.push(s) } as unknown as NodeJS.WriteStream, writes };
  };
  it('draw on a terminal, and stay quiet off a terminal or with --json', () => {
    const tty = fakeStream(true);
    const bar = new ProgressBar('work', { stream: tty.stream });
    bar.update({ done: 1, total: 2 });
    bar.update({ done: 2, total: 2 });
    bar.finish();
    expect(tty.writes.join('')).toMatch(/\rwork \[#+\.*\] 1\/2/);
    expect(tty.writes.join('')).toMatch(/2\/2/);
    for (const [isTTY, quiet] of [[false, false], [true, true]] as const) {
      const s = fakeStream(isTTY);
      const b = new ProgressBar('work', { stream: s.stream, quiet });
      b.update({ done: 1, total: 2 });
      b.finish();
      expect(s.writes).toEqual([]);
    }
  });

  it('fit the terminal: at 80 columns a long label is cut, the line never wraps, and leftovers are cleared', () => {
    const label = 'score hellaswag (10042 requests, 40168 continuations of 4 choices)';
    for (const columns of [80, 160, 40]) {
      const line = progressLine(label, 5, 100, 12.3, columns);
      expect(line.length, `${columns}: ${line}`).toBeLessThanOrEqual(columns - 1);
      expect(line).toMatch(/\[#*\.+\] 5\/100 12\.3s eta \d+s$/);
    }
    expect(progressLine(label, 5, 100, 12.3, 160)).toContain(label); // room: the whole label
    expect(progressLine(label, 5, 100, 12.3, 80)).toMatch(/…/); // cut, marked
    const tty = fakeStream(true);
    const bar = new ProgressBar(label, { stream: Object.assign(tty.stream, { columns: 80 }) });
    bar.update({ done: 1, total: 3 });
    expect(tty.writes[0].startsWith('\r')).toBe(true);
    expect(tty.writes[0].endsWith('\x1b[K')).toBe(true); // clears what a longer earlier line left
  });
});
