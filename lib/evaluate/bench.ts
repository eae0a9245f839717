// `entroprune bench`: prefill and decode speed and peak memory of a model (and of a baseline given with
// --against), in entroprune's engine and — for GGUF files, when node-llama-cpp is available — in llama.cpp,
// measured side by side in one run. Every measurement runs in its own child process (so each peak memory is
// that model's own); rounds alternate between the models and engines, and medians are reported.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { cancelledError, EntropruneError } from '../util/errors';
import { INSTALL_HINT, llamaCppScript } from '../verify/llama-cpp';
import { median } from './speed';

export type BenchEngine = 'entroprune' | 'llama.cpp';

export interface BenchOptions {
  prompt: number;
  generate: number;
  threads: number;
  rounds: number;
  engines?: BenchEngine[];
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface BenchRow {
  model: string;
  role: 'model' | 'baseline';
  engine: BenchEngine;
  status: 'ok' | 'skipped';
  detail?: string;
  prefillTokensPerSecond?: number;
  decodeTokensPerSecond?: number;
  peakRssBytes?: number;
  /** prefill / decode speed over the baseline's in the same engine */
  prefillSpeedup?: number;
  decodeSpeedup?: number;
  rounds?: { prefill: number; decode: number | null; peakRssBytes: number }[];
}

interface Sample {
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number | null;
  peakRssBytes: number;
}

function runChild(cmd: string, args: string[], signal?: AbortSignal, env?: NodeJS.ProcessEnv): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const kill = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', kill);
    child.on('close', (code) => {
      signal?.removeEventListener('abort', kill);
      if (signal?.aborted) return reject(cancelledError(signal));
      if (code !== 0) return reject(new Error(`${path.basename(args[0])} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as Sample);
      } catch {
        reject(new Error(`${path.basename(args[0])} printed no result: ${out.slice(0, 200)}`));
      }
    });
  });
}

export async function bench(modelPath: string, against: string | undefined, o: BenchOptions): Promise<BenchRow[]> {
  const models: { file: string; role: BenchRow['role'] }[] = [...(against ? [{ file: against, role: 'baseline' as const }] : []), { file: modelPath, role: 'model' as const }];
  for (const m of models) if (!fs.existsSync(m.file)) throw new EntropruneError('EP_IO', `${m.file}: no such model`, m.file);
  const engines = o.engines ?? ['entroprune', 'llama.cpp'];
  const peer = llamaCppScript('llama-speed.mjs');
  const childScript = path.join(__dirname, 'bench-child.js');
  const rows: BenchRow[] = [];
  const plan: { row: BenchRow; cmd: string; args: string[]; env?: NodeJS.ProcessEnv }[] = [];
  for (const engine of engines) {
    for (const m of models) {
      const row: BenchRow = { model: m.file, role: m.role, engine, status: 'ok', rounds: [] };
      rows.push(row);
      if (engine === 'entroprune') {
        plan.push({ row, cmd: process.execPath, args: [childScript, JSON.stringify({ model: path.resolve(m.file), prompt: o.prompt, generate: o.generate, threads: o.threads })] });
      } else if (!m.file.endsWith('.gguf')) {
        Object.assign(row, { status: 'skipped', detail: 'llama.cpp runs GGUF files only (write the pruned model with --format gguf)' });
      } else if (!peer) {
        Object.assign(row, { status: 'skipped', detail: INSTALL_HINT });
      } else {
        plan.push({ row, cmd: process.execPath, env: peer.env, args: [peer.script, path.resolve(m.file), '--prompt', String(o.prompt), '--generate', String(o.generate), '--threads', String(o.threads)] });
      }
    }
  }
  const total = plan.length * o.rounds;
  let done = 0;
  for (let r = 0; r < o.rounds; r++) {
    for (const p of plan) {
      if (p.row.status !== 'ok') continue;
      try {
        const s = await runChild(p.cmd, p.args, o.signal, p.env);
        p.row.rounds!.push({ prefill: s.prefillTokensPerSecond, decode: s.decodeTokensPerSecond, peakRssBytes: s.peakRssBytes });
      } catch (e) {
        if (e instanceof EntropruneError) throw e;
        Object.assign(p.row, { status: 'skipped', detail: (e as Error).message });
      }
      o.onProgress?.(++done, total);
    }
  }
  for (const row of rows) {
    if (row.status !== 'ok' || !row.rounds?.length) continue;
    row.prefillTokensPerSecond = median(row.rounds.map((x) => x.prefill));
    const decodes = row.rounds.map((x) => x.decode).filter((x): x is number => x !== null);
    row.decodeTokensPerSecond = decodes.length ? median(decodes) : undefined;
    row.peakRssBytes = Math.max(...row.rounds.map((x) => x.peakRssBytes));
  }
  for (const row of rows) {
    const base = rows.find((b) => b.engine === row.engine && b.role === 'baseline' && b.status === 'ok');
    if (!base || row.status !== 'ok' || row.role !== 'model') continue;
    row.prefillSpeedup = row.prefillTokensPerSecond! / base.prefillTokensPerSecond!;
    if (row.decodeTokensPerSecond && base.decodeTokensPerSecond) row.decodeSpeedup = row.decodeTokensPerSecond / base.decodeTokensPerSecond;
  }
  return rows;
}

export function benchTable(rows: BenchRow[], o: BenchOptions): string {
  const mb = (b?: number) => (b === undefined ? '-' : `${(b / 2 ** 20).toFixed(1)} MiB`);
  const sp = (x?: number) => (x === undefined ? '' : ` (${x.toFixed(2)}×)`);
  const body = rows.map((r) =>
    r.status === 'ok'
      ? [path.basename(r.model), r.engine, `${r.prefillTokensPerSecond!.toFixed(0)}${sp(r.prefillSpeedup)}`, `${r.decodeTokensPerSecond?.toFixed(0) ?? '-'}${sp(r.decodeSpeedup)}`, mb(r.peakRssBytes)]
      : [path.basename(r.model), r.engine, 'skipped', r.detail ?? '', ''],
  );
  const head = ['model', 'engine', 'prefill tok/s', 'decode tok/s', 'peak RSS'];
  const w = head.map((h, i) => Math.max(h.length, ...body.filter((b) => b[2] !== 'skipped' || i < 3).map((b) => b[i].length)));
  const fmt = (r: string[]) => (r[2] === 'skipped' ? `${r[0].padEnd(w[0])}  ${r[1].padEnd(w[1])}  skipped: ${r[3]}` : r.map((x, i) => (i < 2 ? x.padEnd(w[i]) : x.padStart(w[i]))).join('  '));
  return [
    `prompt ${o.prompt} tokens, then ${o.generate} generated; ${o.threads} thread(s); median of ${o.rounds} round(s), each measurement in its own process (peak RSS includes the Node runtime)`,
    fmt(head),
    ...body.map(fmt),
  ].join('\n');
}
