// Method comparison (the paper's main table): analyze once, then for each method × ratio plan, apply,
// evaluate perplexity and zero-shot accuracy, and measure forward speed against the original measured in
// the same run. Every finished cell is saved at once to <out>/compare.json, so an interrupted run resumes
// where it stopped and never redoes a cell; a run with different settings refuses to mix into it.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { analysisCalibrationWindows, applyPlan, createRefitCache, planNeedsRefit, type CalibrationWindows, type CompensationMode } from '../apply/apply';
import { refinedPlan } from '../apply/plan-loss';
import { defaultSpeedSeqLen, evaluateModel, prepareEvalInputs, type EvalInputs } from '../evaluate/evaluate-model';
import { beyondContextWarning } from '../evaluate/perplexity';
import { prefillThroughput } from '../evaluate/speed';
import { averageAccuracy, TaskResult } from '../evaluate/tasks/zero-shot';
import { loadModel, type Model } from '../load/model';
import { tokenizerFor } from '../load/tokenizer';
import { analysisSensitivityWindows, analyzeToFile } from '../measure/analyze';
import type { GenerationQuality } from '../evaluate/generation';
import { readAnalysis, type LoadedAnalysis } from '../measure/analysis';
import { readPlan, writePlan, type PlanMethod, type PruningPlan } from '../plan/plan';
import { cutDamageFor, plan as makePlan, type PlanOptions } from '../plan/planner';
import { writeFileAtomic } from '../util/atomic';
import { EntropruneError } from '../util/errors';
import { readJsonFile } from '../util/json-file';
import type { ProgressEvent } from '../util/progress';
import { VERSION } from '../version';

export const COMPARE_FORMAT = 'entroprune.compare';

export interface CompareSettings {
  model: string;
  calib: string;
  samples: number;
  /** 0: min(2048, context) */
  calibSeqLen: number;
  seed: number;
  /** texts scored for perplexity, each a column */
  evalTexts: string[];
  /** 0: min(2048, context) */
  evalSeqLen: number;
  evalMaxTokens?: number;
  tasks: string[];
  tasksDir?: string;
  limit?: number;
  ratios: number[];
  methods: CompareMethod[];
  /** forward-speed measurement: one sequence of this many tokens per call (0: min(512, context)) */
  speedSeqLen: number;
  /** compensation of removed heads and channels for every row but 'paper' (default least-squares) */
  compensation?: CompensationMode;
  /** false: the 'entropy' row plans from the damage model alone, without the measured refinement (docs/METHOD.md §4c) */
  refine?: boolean;
  /** held-out prompts each model continues greedily (default DEFAULT_GENERATION_PROMPTS, 8; 0: none) */
  generationPrompts?: number;
}

/**
 * The rows a comparison can hold: the planner's methods, plus 'paper' — the entropy method with the paper's
 * rules as first reconstructed (water-filled ratios from the output-targeted TE, 1/TE split, K-means, DFS),
 * reported beside entroprune's default so the difference shows.
 */
export type CompareMethod = PlanMethod['name'] | 'paper';
export const COMPARE_METHODS: CompareMethod[] = ['entropy', 'paper', 'uniform', 'block-drop', 'layer-drop'];

/** The plan options of one comparison row. */
export function compareMethodOptions(m: CompareMethod): Pick<PlanOptions, 'method' | 'allocation' | 'estimator'> {
  return m === 'paper' ? { method: 'entropy', allocation: 'paper', estimator: 'output-te' } : { method: m };
}

/** The compensation of one comparison row: the paper's bias for 'paper', the setting (default least-squares) for the rest. */
export function compareCompensation(m: CompareMethod, settings: Pick<CompareSettings, 'compensation'>): CompensationMode {
  return m === 'paper' ? 'bias' : (settings.compensation ?? 'least-squares');
}

export interface CellResult {
  method: CompareMethod | 'original';
  ratio: number;
  achievedRatio: number;
  wholeModelRatio: number;
  /** parameters of the (pruned) model, embeddings and head included */
  params: number;
  /** perplexity per evaluation text (same order as settings.evalTexts) */
  ppl: number[];
  tasks: TaskResult[];
  averageAccuracy: number | null;
  tokensPerSecond: number;
  /** repetition figures of greedy continuations of held-out prompts */
  generation?: GenerationQuality;
  /** tokens/s over the original's, measured in the same run */
  speedup: number;
  plan?: string;
  seconds: number;
}

export interface CompareState {
  format: typeof COMPARE_FORMAT;
  version: 1;
  createdBy: string;
  settingsHash: string;
  settings: CompareSettings;
  analysis: string;
  cells: Record<string, CellResult>;
}

export interface CompareOptions {
  out: string;
  /** a setting that runs but gives figures that mean little (a window beyond the model's context) */
  onWarning?: (message: string) => void;
  keepModels?: boolean;
  onStep?: (label: string) => void;
  onProgress?: (label: string, p: ProgressEvent) => void;
  signal?: AbortSignal;
  /** CUDA devices for the calibration pass of the analysis. Not part of the resume settings: the analysis is
   * computed once and reused by every cell, also by a resumed run on another device. */
  cudaDevices?: number[];
}

export const cellKey = (method: string, ratio: number) => `${method}@${ratio}`;

function hashSettings(s: CompareSettings): string {
  // The model and files are identified by resolved path and size/mtime: a changed file invalidates the cells.
  const stamp = (f: string) => {
    try {
      const st = fs.statSync(f);
      return `${path.resolve(f)}:${st.isDirectory() ? 'dir' : st.size}`;
    } catch {
      return path.resolve(f);
    }
  };
  const key = { ...s, model: stamp(s.model), calib: stamp(s.calib), evalTexts: s.evalTexts.map(stamp), tasksDir: s.tasksDir && path.resolve(s.tasksDir) };
  return createHash('sha256').update(JSON.stringify(key)).digest('hex');
}

export function readCompareState(file: string): CompareState {
  const j = readJsonFile(file, 'comparison state') as CompareState;
  if (j.format !== COMPARE_FORMAT || j.version !== 1 || typeof j.cells !== 'object')
    throw new EntropruneError('EP_FORMAT', `${file}: not an entroprune comparison state (format ${String(j.format)}, version ${String(j.version)})`, file);
  return j;
}

function saveState(file: string, state: CompareState): void {
  writeFileAtomic(file, JSON.stringify(state, null, 1) + '\n');
}

export async function compare(settings: CompareSettings, o: CompareOptions): Promise<CompareState> {
  for (const r of settings.ratios) if (!(r > 0 && r < 1)) throw new EntropruneError('EP_INVALID_ARGUMENT', `ratio must lie in (0, 1) (got ${r})`);
  fs.mkdirSync(o.out, { recursive: true });
  const stateFile = path.join(o.out, 'compare.json');
  const settingsHash = hashSettings(settings);
  let state: CompareState;
  if (fs.existsSync(stateFile)) {
    state = readCompareState(stateFile);
    if (state.settingsHash !== settingsHash)
      throw new EntropruneError(
        'EP_INVALID_ARGUMENT',
        `${stateFile} holds a comparison with other settings (model, data, ratios, methods, tasks or limits differ): use another --out directory, or delete it to start over`,
        stateFile,
      );
  } else {
    state = { format: COMPARE_FORMAT, version: 1, createdBy: `entroprune ${VERSION}`, settingsHash, settings, analysis: 'analysis.json', cells: {} };
  }

  const model = await loadModel(settings.model);
  for (const [seqLen, flag] of [[settings.calibSeqLen, '--seq-len'], [settings.evalSeqLen, '--eval-seq-len']] as const) {
    const warning = beyondContextWarning(model.info, seqLen, flag);
    if (warning) o.onWarning?.(warning);
  }
  const tokenizer = tokenizerFor(model);
  const texts = settings.evalTexts.map((f) => {
    if (!fs.existsSync(f)) throw new EntropruneError('EP_IO', `${f}: evaluation text not found`, f);
    return fs.readFileSync(f, 'utf8');
  });

  // 0 means "the default for this model"
  const speedSeqLen = settings.speedSeqLen || defaultSpeedSeqLen(model);

  // ---- analysis: once, reused by every cell and on resume
  const analysisFile = path.join(o.out, state.analysis);
  let analysis: LoadedAnalysis;
  // The analysis' calibration windows, which least-squares compensation refits on: kept from a fresh analysis,
  // drawn again once (a resumed run) when the first cell needs them — not re-tokenized for every cell.
  let calibrationWindows: CalibrationWindows | undefined;
  // every method and ratio refits on the same calibration windows: each layer's input moments captured once
  const refitCache = createRefitCache();
  let sensitivityWindows: CalibrationWindows | undefined;
  if (fs.existsSync(analysisFile)) {
    analysis = readAnalysis(analysisFile);
  } else {
    o.onStep?.('analyze');
    ({ calibrationWindows, sensitivityWindows } = await analyzeToFile(model, analysisFile, {
      calib: settings.calib,
      tokenizer: /\.(json|tokens|i32)$/i.test(settings.calib) ? undefined : tokenizer,
      samples: settings.samples,
      seqLen: settings.calibSeqLen || undefined,
      seed: settings.seed,
      cudaDevices: o.cudaDevices,
      onProgress: (p) => o.onProgress?.('analyze', p),
      signal: o.signal,
    }));
    analysis = readAnalysis(analysisFile);
  }

  // Texts and task requests are tokenized once, on first use (a resumed run with nothing left does none).
  let inputs: EvalInputs | undefined;
  const evaluate = async (m: Model, label: string) =>
    evaluateModel(m, label, {
      inputs: (inputs ??= await prepareEvalInputs(model, tokenizer, {
        texts: settings.evalTexts.map((file, i) => ({ file, text: texts[i] })),
        maxTokens: settings.evalMaxTokens,
        tasks: settings.tasks,
        tasksDir: settings.tasksDir,
        limit: settings.limit,
        seed: settings.seed,
        generationPrompts: settings.generationPrompts,
        signal: o.signal,
      })),
      seqLen: settings.evalSeqLen || undefined,
      speedSeqLen,
      cudaDevices: o.cudaDevices,
      onProgress: o.onProgress,
      signal: o.signal,
    });

  // ---- the original: the reference row and the speed baseline
  const originalKey = cellKey('original', 0);
  if (!state.cells[originalKey]) {
    o.onStep?.('original');
    const t0 = Date.now();
    const e = await evaluate(model, 'original');
    state.cells[originalKey] = {
      method: 'original',
      ratio: 0,
      achievedRatio: 0,
      wholeModelRatio: 0,
      params: model.info.parameterCount,
      ...e,
      averageAccuracy: e.tasks.length ? averageAccuracy(e.tasks) : null,
      speedup: 1,
      seconds: (Date.now() - t0) / 1000,
    };
    saveState(stateFile, state);
  }

  fs.mkdirSync(path.join(o.out, 'plans'), { recursive: true });
  fs.mkdirSync(path.join(o.out, 'models'), { recursive: true });
  for (const method of settings.methods) {
    for (const ratio of settings.ratios) {
      const key = cellKey(method, ratio);
      if (state.cells[key]) continue;
      o.onStep?.(`${method} ${(ratio * 100).toFixed(0)} %`);
      const t0 = Date.now();
      const compensation = compareCompensation(method, settings);
      const planOptions = { ratio, ...compareMethodOptions(method), cutDamage: cutDamageFor(compensation), analysisFile, vocab: model.info.vocab, tiedOutput: model.info.tiedOutput };
      let p: PruningPlan;
      if (method === 'entropy' && settings.refine !== false && analysis.analysis.sensitivity) {
        // the default method as prune runs it: measured on the sensitivity windows, refitted on the calibration ones
        sensitivityWindows ??= await analysisSensitivityWindows(model, analysis.analysis, tokenizer, o.signal);
        if (compensation === 'least-squares') calibrationWindows ??= await analysisCalibrationWindows(model, analysis.analysis.calibration, tokenizer, o.signal);
        p = await refinedPlan(model, analysis, planOptions, { windows: sensitivityWindows!, compensation, calibration: calibrationWindows, tokenizer, cudaDevices: o.cudaDevices, refitCache, signal: o.signal, onProgress: (ev) => o.onProgress?.(`refine ${method} ${ratio}`, ev) });
      } else {
        p = makePlan(analysis.analysis, planOptions);
      }
      const planFile = path.join(o.out, 'plans', `${method}-${ratio}.plan.json`);
      writePlan(planFile, p);
      const modelFile = path.join(o.out, 'models', `${method}-${ratio}.gguf`);
      if (compensation === 'least-squares' && planNeedsRefit(model, p)) calibrationWindows ??= await analysisCalibrationWindows(model, analysis.analysis.calibration, tokenizer, o.signal);
      await applyPlan(model, p, { output: modelFile, format: 'gguf', force: true, analysis, compensation, calibration: calibrationWindows, cudaDevices: o.cudaDevices, refitCache, signal: o.signal, onProgress: (ev) => o.onProgress?.(`apply ${method} ${ratio}`, ev) });
      try {
        const pruned = await loadModel(modelFile);
        const e = await evaluate(pruned, `${method} ${ratio}`);
        // The original is timed again right beside each pruned model: machines drift, side by side does not.
        const baselineSpeed = (await prefillThroughput(model, { seqLen: speedSeqLen, repeats: 3, signal: o.signal })).tokensPerSecond;
        state.cells[key] = {
          method,
          ratio,
          achievedRatio: p.achieved.ratio,
          wholeModelRatio: p.achieved.wholeModelRatio,
          params: Math.round(model.info.parameterCount * (1 - p.achieved.wholeModelRatio)),
          ...e,
          averageAccuracy: e.tasks.length ? averageAccuracy(e.tasks) : null,
          speedup: e.tokensPerSecond / baselineSpeed,
          plan: path.relative(o.out, planFile),
          seconds: (Date.now() - t0) / 1000,
        };
        saveState(stateFile, state);
      } finally {
        if (!o.keepModels) fs.rmSync(modelFile, { force: true });
      }
    }
  }
  return state;
}

/** Rows in table order: the original, then each method's ratios. */
export function orderedCells(state: CompareState): CellResult[] {
  const out: CellResult[] = [];
  const orig = state.cells[cellKey('original', 0)];
  if (orig) out.push(orig);
  for (const m of state.settings.methods) for (const r of state.settings.ratios) if (state.cells[cellKey(m, r)]) out.push(state.cells[cellKey(m, r)]);
  return out;
}

export function compareTable(state: CompareState): string {
  const s = state.settings;
  const cells = orderedCells(state);
  const taskNames = s.tasks;
  const gen = cells.some((c) => c.generation);
  const head = ['method', 'ratio', 'params', ...s.evalTexts.map((f) => `ppl:${path.basename(f).replace(/\.(raw|txt)$/, '')}`), ...taskNames, ...(taskNames.length ? ['avg'] : []), ...(gen ? ['rep-4', 'dist-2', 'loops'] : []), 'speed-up'];
  const rows = cells.map((c) => {
    const acc = (t: TaskResult) => ((t.accNorm ?? t.acc).value * 100).toFixed(1);
    return [
      c.method,
      c.method === 'original' ? '-' : `${(c.ratio * 100).toFixed(0)}% (${(c.achievedRatio * 100).toFixed(1)})`,
      c.params >= 1e9 ? `${(c.params / 1e9).toFixed(2)}B` : c.params >= 1e6 ? `${(c.params / 1e6).toFixed(2)}M` : `${(c.params / 1e3).toFixed(0)}K`,
      ...c.ppl.map((x) => (x >= 1e4 ? x.toExponential(2) : x.toFixed(2))),
      ...taskNames.map((n) => {
        const t = c.tasks.find((x) => x.task === n);
        return t ? acc(t) : '-';
      }),
      ...(taskNames.length ? [c.averageAccuracy === null ? '-' : (c.averageAccuracy * 100).toFixed(2)] : []),
      ...(gen ? (c.generation ? [c.generation.repeat4.toFixed(3), c.generation.distinct2.toFixed(3), `${c.generation.looping ?? '-'}/${c.generation.prompts}`] : ['-', '-', '-']) : []),
      `${c.speedup.toFixed(2)}×`,
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

/** The saved plans of one method (default: the paper's), in ratio order, for the report. */
export function comparePlans(state: CompareState, outDir: string, method: CompareMethod = 'entropy'): { label: string; plan: PruningPlan }[] {
  return state.settings.ratios
    .map((r) => state.cells[cellKey(method, r)])
    .filter((c): c is CellResult => Boolean(c?.plan))
    .map((c) => ({ label: `${method} ${(c.ratio * 100).toFixed(0)} %`, plan: readPlan(path.join(outDir, c.plan!)) }));
}
