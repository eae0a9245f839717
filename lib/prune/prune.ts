// The one-call pipeline: analyze → plan → apply, used by the CLI's `prune` and by the Node API alike.
// Every check that needs no model work comes first (an output that is an input, an existing output or
// analysis/plan left by an earlier run, an output folder that is missing); one writer per output (a lock);
// and the analysis and plan written beside the output are removed again when the run fails or is
// interrupted, so a run leaves either everything or nothing.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { applyPlan, checkOutputPath, createRefitCache, defaultFormat, type ApplyOptions, type ApplyResult } from '../apply/apply';
import { refinedPlan } from '../apply/plan-loss';
import type { Model } from '../load/model';
import type { Tokenizer } from '../load/tokenizer';
import type { Analysis } from '../measure/analysis';
import { analyze, analyzeToFile, type AnalyzeOptions, type AnalyzeResult } from '../measure/analyze';
import { writePlan, type PruningPlan } from '../plan/plan';
import { cutDamageFor, plan as makePlan, type PlanOptions } from '../plan/planner';
import type { RefineOptions } from '../plan/refine';
import { EntropruneError } from '../util/errors';
import { assertOutputSparesInputs } from '../util/file-identity';
import { trackTemporary } from '../util/interrupt';
import { withOutputLock } from '../util/output-lock';
import type { ProgressEvent } from '../util/progress';

export interface PruneOptions {
  /** the share of the blocks' linear weights to remove, in (0, 1) */
  ratio: number;
  /** calibration file: text, JSONL (`text` field) or pre-tokenized ids (.json array, .tokens) */
  calib: string;
  /** the pruned model: a .gguf or llama2.c .bin file, or a Hugging Face folder */
  output: string;
  /** the tokenizer for a text calibration file (default: the model's own) */
  tokenizer?: Tokenizer;
  /** analyze's settings (samples, seqLen, seed, stream, cudaDevices, sensitivity, …) */
  analyze?: Omit<AnalyzeOptions, 'calib' | 'tokenizer' | 'onProgress' | 'onSensitivityProgress' | 'onTokenizeProgress' | 'signal'>;
  /** the planner's settings (method, importance, allocation, estimator, align, uniformShape, …) */
  plan?: Omit<PlanOptions, 'ratio' | 'analysisFile' | 'vocab' | 'tiedOutput'>;
  /** output format (default: from the output name, else the input's format) */
  format?: ApplyOptions['format'];
  /** matrix dtype of the output (default f32) */
  dtype?: ApplyOptions['dtype'];
  /** how removed heads and channels are compensated (default least-squares; ApplyOptions.compensation) */
  compensation?: ApplyOptions['compensation'];
  /** replace an existing output (and the analysis and plan beside it) */
  force?: boolean;
  /**
   * write `<output>.analysis.json` (with its means file) and `<output>.plan.json` beside the output (default
   * true: what `entroprune apply` and `verify --plan` read later); false keeps them in memory only
   */
  sidecars?: boolean;
  /**
   * measure the plan and its candidates on the sensitivity windows and keep the best (docs/METHOD.md §4c; default
   * true, or the refinement's settings); false plans from the damage model alone. Needs the measured sensitivities.
   */
  refine?: boolean | RefineOptions;
  /**
   * progress of each step: 'tokenize' (the calibration text), 'analyze' (calibration, then the sensitivity windows),
   * 'refine' (each candidate plan measured) and 'apply' (tensors)
   */
  onProgress?: (step: PruneStep, p: ProgressEvent) => void;
  /** cancels between batches and tensors; nothing is left behind */
  signal?: AbortSignal;
}

export type PruneStep = 'tokenize' | 'analyze' | 'refine' | 'apply';

export interface PruneResult {
  /** the analysis (with `.mean()` for the calibration means) */
  analysis: AnalyzeResult;
  plan: PruningPlan;
  apply: ApplyResult;
  /** where the analysis and plan were written (absent with `sidecars: false`) */
  analysisFile?: string;
  planFile?: string;
}

/** `<output>.analysis.json` and `<output>.plan.json` (a .gguf suffix and trailing slashes dropped). */
export function sidecarFiles(output: string): { analysisFile: string; planFile: string } {
  const base = output.replace(/\.gguf$/i, '').replace(/\/+$/, '');
  return { analysisFile: `${base}.analysis.json`, planFile: `${base}.plan.json` };
}

/** Prune `model` by `ratio` in one call: analyze on `calib`, plan, write `output`. */
export async function prune(model: Model, o: PruneOptions): Promise<PruneResult> {
  if (!(o.ratio > 0 && o.ratio < 1)) throw new EntropruneError('EP_INVALID_ARGUMENT', `ratio must lie in (0, 1) (got ${o.ratio})`);
  return withOutputLock(o.output, async () => {
    const sidecars = o.sidecars ?? true;
    const { analysisFile, planFile } = sidecarFiles(o.output);
    // Checks that need no model work, before any: the output and its sidecars must not be inputs, must not
    // exist unless replacing was asked for, and must have a folder to land in.
    assertOutputSparesInputs(o.output, [model.info.path, o.calib, o.tokenizer?.source]);
    if (sidecars) for (const f of [analysisFile, planFile]) assertOutputSparesInputs(f, [model.info.path, o.calib, o.tokenizer?.source]);
    checkOutputPath(o.output, o.force); // the same check apply makes, before the analysis instead of after it
    if (sidecars)
      for (const f of [analysisFile, planFile])
        if (fs.existsSync(f) && !o.force) throw new EntropruneError('EP_IO', `${f}: already exists (left by an earlier prune to ${o.output}?): pass --force / force: true to replace it`, f);
    const format = o.format ?? defaultFormat(model, o.output);
    checkFormatCanHoldPlan(format, o.output, model, o.plan ?? {});

    // The analysis and plan belong to this run's output: until it is complete they are removed again if the
    // run fails or is interrupted.
    const written: { file: string; untrack: () => void }[] = [];
    const track = (file: string) => written.push({ file, untrack: trackTemporary(file) });
    let done = false;
    try {
      const analyzeOptions: AnalyzeOptions = {
        // the refit-aware damage serves least-squares compensation only
        ...(o.compensation === 'bias' ? { refitDamage: false } : {}),
        ...o.analyze,
        calib: o.calib,
        tokenizer: o.tokenizer,
        onTokenizeProgress: (p) => o.onProgress?.('tokenize', p),
        onProgress: (p) => o.onProgress?.('analyze', p),
        onSensitivityProgress: (p) => o.onProgress?.('analyze', p),
        onRefitDamageProgress: (p) => o.onProgress?.('analyze', p),
        signal: o.signal,
      };
      let result: AnalyzeResult;
      if (sidecars) {
        track(analysisFile);
        const pair = await analyzeToFile(model, analysisFile, analyzeOptions);
        track(path.join(path.dirname(analysisFile), (pair.analysis as Analysis).means.file));
        result = pair;
      } else {
        result = await analyze(model, analyzeOptions);
      }
      // Ranking by weight magnitude reads the model's weights, which the analysis does not hold.
      const weights = o.plan?.importance === 'weight' && !o.plan.weights ? model.handle.unitWeightMagnitudes() : o.plan?.weights;
      const cutDamage = cutDamageFor(o.compensation, o.plan?.cutDamage);
      const planOptions = { ...o.plan, cutDamage, weights, ratio: o.ratio, analysisFile: sidecars ? analysisFile : undefined, vocab: model.info.vocab, tiedOutput: model.info.tiedOutput };
      const refine = o.refine ?? true;
      // the GPUs of the calibration also run the refinement's plan losses and the refit's capture
      const devices = { cudaDevices: o.analyze?.cudaDevices, precision: o.analyze?.precision };
      const refineWindows = refine !== false ? result.sensitivityWindows : undefined;
      // the refinement's candidates and the final apply refit on the same windows: each layer captured once (without
      // the refinement the apply refits once, and a cache would only hold a copy)
      const refitCache = refineWindows ? createRefitCache() : undefined;
      const p =
        refineWindows
          ? await refinedPlan(model, result, planOptions, {
              ...(typeof refine === 'object' ? refine : {}),
              windows: refineWindows,
              compensation: o.compensation,
              calibration: result.calibrationWindows,
              tokenizer: o.tokenizer,
              ...devices,
              refitCache,
              onProgress: (ev) => o.onProgress?.('refine', ev),
              signal: o.signal,
            })
          : makePlan(result.analysis, planOptions);
      if (sidecars) {
        track(planFile);
        writePlan(planFile, p);
      }
      const applied = await applyPlan(model, p, {
        output: o.output,
        format,
        dtype: o.dtype,
        force: o.force,
        analysis: result,
        compensation: o.compensation,
        tokenizer: o.tokenizer,
        ...devices,
        refitCache,
        onProgress: (ev) => o.onProgress?.('apply', ev),
        signal: o.signal,
      });
      done = true;
      return { analysis: result, plan: p, apply: applied, ...(sidecars ? { analysisFile, planFile } : {}) };
    } finally {
      for (const w of written) {
        if (!done) fs.rmSync(w.file, { force: true }); // the run failed: nothing of it stays
        w.untrack();
      }
    }
  });
}

/**
 * Refuse, before the analysis, a plan whose shape the output format predictably cannot hold (the writers
 * refuse it too, but only after the minutes of analysis): Hugging Face output needs one shape for every block
 * (a stock Llama config) or the Nemotron-NAS layout (whole attention layers, MLP widths in multiples of 256);
 * a llama2.c checkpoint needs one shape, every query head and no biases.
 */
export function checkFormatCanHoldPlan(format: ApplyOptions['format'], output: string, model: Model, p: Omit<PlanOptions, 'ratio'>): void {
  const method = p.method ?? 'entropy';
  const oneShape = (p.uniformShape ?? false) || method === 'uniform' || method === 'block-drop';
  if (format === 'hf' && !oneShape) {
    const nas = (p.align ?? 1) % 256 === 0 && model.info.layers.every((l) => l.nHead === 0 || (p.alignHeads ?? 1) % l.nHead === 0);
    if (!nas)
      throw new EntropruneError(
        'EP_UNSUPPORTED',
        `${output}: Hugging Face output needs one shape for every block, which this plan does not promise: prune with --uniform (uniformShape: true), ` +
          `with --align 256 --align-heads ${Math.max(...model.info.layers.map((l) => l.nHead))} (the Nemotron-NAS layout), the uniform or block-drop method, or write GGUF`,
        output,
      );
  }
  if (format === 'llama2c') {
    const shapeOk = (oneShape && (p.granularity ?? 'multi') === 'width-only') || method === 'block-drop';
    if (!shapeOk || (p.compensation ?? true))
      throw new EntropruneError(
        'EP_UNSUPPORTED',
        `${output}: a llama2.c checkpoint keeps every query head, one MLP width and no biases: prune with --granularity width-only --uniform --no-compensation, or block-drop --no-compensation, or write GGUF`,
        output,
      );
  }
}
