// The loss of the model a plan would produce, measured in memory without writing it (native/core/apply/plan_loss.h):
// the same cuts, compensation constants and least-squares refits applyPlan writes, run on scoring windows; with
// leaveOneOut also the model with each partly cut layer restored alone. The planner's measured refinement
// (lib/plan/refine.ts) reads it; a plan's loss is also a quick check before writing a large model.
import type { Model } from '../load/model';
import { native } from '../native';
import type { PruningPlan } from '../plan/plan';
import type { PlannerInput, PlanOptions } from '../plan/planner';
import { refinePlan, type PlanLossMeasurement, type RefineOptions } from '../plan/refine';
import { EntropruneError } from '../util/errors';
import { awaitNativeJob } from '../util/native-job';
import type { ProgressEvent } from '../util/progress';
import { analysisCalibrationWindows, createRefitCache, nativeBlocks, planMeans, planNeedsRefit, refitSettings, type ApplyOptions, type CalibrationWindows, type CompensationMode } from './apply';

export interface PlanLossOptions {
  /** the analysis the plan was made from: its means, and the windows least-squares compensation refits on */
  analysis: NonNullable<ApplyOptions['analysis']>;
  /** the windows the loss is measured on (at least 2 tokens each) */
  windows: CalibrationWindows;
  /** as applyPlan compensates (default least-squares) */
  compensation?: CompensationMode;
  /** also measure the plan with each partly cut layer restored alone */
  leaveOneOut?: boolean;
  /** applyPlan's settings of the refit */
  calibration?: ApplyOptions['calibration'];
  tokenizer?: ApplyOptions['tokenizer'];
  leastSquaresDamping?: number;
  /** measure on the first of these GPUs (absent: the CPU), and run the refit's capture there as applyPlan does */
  cudaDevices?: number[];
  precision?: 'bf16' | 'f16' | 'f32';
  /** applyPlan's refit moment cache (`createRefitCache()`): refits on the same windows capture each layer once */
  refitCache?: ApplyOptions['refitCache'];
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
}

export async function measurePlanLoss(model: Model, plan: PruningPlan, o: PlanLossOptions): Promise<PlanLossMeasurement> {
  const w = o.windows;
  if (!(w.samples >= 1 && w.seqLen >= 2 && w.tokens.length === w.samples * w.seqLen))
    throw new EntropruneError('EP_INVALID_ARGUMENT', `plan loss: ${w.tokens.length} tokens do not make ${w.samples} windows of ${w.seqLen} (2 or more tokens each)`);
  const refit = (o.compensation ?? 'least-squares') === 'least-squares' ? await refitSettings(model, plan, o.analysis, o) : undefined;
  const job = native().measurePlanLoss(
    model.handle,
    {
      blocks: nativeBlocks(plan), means: planMeans(plan, o.analysis), refit, tokens: w.tokens, nSeqs: w.samples, seqLen: w.seqLen, leaveOneOut: o.leaveOneOut ?? false,
      ...(o.cudaDevices?.length ? { cudaDevices: o.cudaDevices, precision: o.precision } : {}),
    },
    (done, total) => o.onProgress?.({ done, total }),
  );
  const r = await awaitNativeJob(job, o.signal);
  const perBlock = (x: { nll: Float64Array; kl: Float64Array }) => Array.from(x.nll, (nll, l) => (Number.isNaN(nll) ? undefined : { nll, kl: x.kl[l] }));
  return { intactNll: r.intactNll, plan: r.plan, restored: { attn: perBlock(r.attnRestored), mlp: perBlock(r.mlpRestored) } };
}

/**
 * Plan with the measured refinement (lib/plan/refine.ts): every candidate plan measured on `windows` with the
 * compensation apply will use. `analysis` is the planner's input with the means (an analyze() result or a read
 * analysis file).
 */
export async function refinedPlan(
  model: Model,
  analysis: NonNullable<ApplyOptions['analysis']> & { analysis: PlannerInput },
  options: PlanOptions,
  o: Omit<PlanLossOptions, 'analysis' | 'leaveOneOut'> & RefineOptions,
): Promise<PruningPlan> {
  // The refit's windows, when neither the caller nor the analysis holds them, are drawn again from the calibration
  // file once for every candidate (refitSettings would tokenize the file for each), and only once one needs them.
  let drawn: Promise<CalibrationWindows> | undefined;
  const windowsFor = (p: PruningPlan) => {
    if (o.calibration ?? analysis.calibrationWindows) return o.calibration; // refitSettings takes the analysis' own
    if ((o.compensation ?? 'least-squares') !== 'least-squares' || !planNeedsRefit(model, p)) return undefined;
    return (drawn ??= analysisCalibrationWindows(model, analysis.analysis.calibration, o.tokenizer, o.signal));
  };
  // The candidates cut mostly the same layers on the same windows: each layer's input moments are captured once.
  const refitCache = o.refitCache ?? createRefitCache();
  return refinePlan(analysis.analysis, options, async (p, leaveOneOut) => measurePlanLoss(model, p, { ...o, refitCache, calibration: await windowsFor(p), analysis, leaveOneOut }), o);
}
