// Measured sensitivities: the held-out loss increase from removing each block, attention layer and MLP
// layer alone (native/core/measure/sensitivity.h), and how well each estimator ranks the parts against them.
// These are the ground truth the estimators are judged by, and the planner's default sublayer importance.
import type { Model } from '../load/model';
import { awaitNativeJob } from '../util/native-job';
import type { ProgressEvent } from '../util/progress';
import { entropyPower, type BlockStats, type Estimator, type MeasuredSensitivity, type PartFigures } from './analysis';

export interface SensitivityOptions {
  /** token windows, each scored alone ([windows × seqLen]) */
  tokens: Int32Array;
  windows: number;
  seqLen: number;
  seed: number;
  /** per block E[a_l] and E[m_l] (empty where absent): removed parts replaced by their means; absent: by nothing */
  means?: { attnOut: Float64Array[]; mlpOut: Float64Array[] };
  /** partial cuts to measure as well, per block: the query heads / channels removed and their means (head_dim or 1 per unit) */
  cuts?: { attn: Int32Array[]; attnMeans: Float64Array[]; mlp: Int32Array[]; mlpMeans: Float64Array[] };
  /** GPUs that run it, as analyze's (absent: the CPU) */
  cudaDevices?: number[];
  /** the GPUs' matrix-product precision, as analyze's */
  precision?: 'bf16' | 'f16' | 'f32';
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
}

const orNull = (x: number) => (Number.isFinite(x) ? x : null);

type Measured = Omit<MeasuredSensitivity, 'agreement' | 'agreementWithLoss' | 'partial'> & {
  /** the partial cuts' figures, when cuts were asked for */
  partialDamage?: { kl: { attn: (number | null)[]; mlp: (number | null)[] }; nll: { attn: (number | null)[]; mlp: (number | null)[] } };
};

export async function measureSensitivity(model: Model, o: SensitivityOptions): Promise<Measured> {
  const cuts = o.cuts ? { attnCut: o.cuts.attn, attnCutMeans: o.cuts.attnMeans, mlpCut: o.cuts.mlp, mlpCutMeans: o.cuts.mlpMeans } : {};
  const job = model.handle.measureRemovalDamage(
    { tokens: o.tokens, nSeqs: o.windows, seqLen: o.seqLen, attnOutMean: o.means?.attnOut, mlpOutMean: o.means?.mlpOut, ...cuts, cudaDevices: o.cudaDevices, precision: o.precision },
    (done, total) => o.onProgress?.({ done, total }),
  );
  const r = await awaitNativeJob(job, o.signal);
  const partial = r.partial;
  return {
    ...(partial
      ? { partialDamage: { kl: { attn: Array.from(partial.kl.attn, orNull), mlp: Array.from(partial.kl.mlp, orNull) }, nll: { attn: Array.from(partial.nll.attn, orNull), mlp: Array.from(partial.nll.mlp, orNull) } } }
      : {}),
    windows: o.windows,
    seqLen: o.seqLen,
    seed: o.seed,
    compensated: Boolean(o.means),
    baseNll: r.baseNll,
    block: Array.from(r.nll.block, orNull),
    attn: Array.from(r.nll.attn, orNull),
    mlp: Array.from(r.nll.mlp, orNull),
    kl: { block: Array.from(r.kl.block, orNull), attn: Array.from(r.kl.attn, orNull), mlp: Array.from(r.kl.mlp, orNull) },
  };
}

/** Ranks with ties averaged (1-based). */
function ranks(x: number[]): number[] {
  const order = x.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(x.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let k = i; k <= j; k++) r[order[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

/** Spearman's rank correlation; NaN with fewer than 3 pairs or a constant side. */
export function spearman(a: number[], b: number[]): number {
  if (a.length !== b.length || a.length < 3) return NaN;
  const ra = ranks(a);
  const rb = ranks(b);
  const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
  const ma = mean(ra);
  const mb = mean(rb);
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i] - ma) * (rb[i] - mb);
    da += (ra[i] - ma) ** 2;
    db += (rb[i] - mb) ** 2;
  }
  return da > 0 && db > 0 ? num / Math.sqrt(da * db) : NaN;
}

/** The estimator's block and sublayer importances as the planner reads them. */
export function estimatorValues(blocks: BlockStats[], e: Exclude<Estimator, 'measured'>): { block: number[]; attn: number[]; mlp: number[] } {
  if (e === 'output-te') return { block: blocks.map((b) => b.te), attn: blocks.map((b) => b.teAttn), mlp: blocks.map((b) => b.teMlp) };
  return { block: blocks.map((b) => b.teStream ?? NaN), attn: blocks.map((b) => b.teStreamAttn ?? NaN), mlp: blocks.map((b) => b.teStreamMlp ?? NaN) };
}

/** ρ of an estimator against measured figures: over blocks, and over every attention and MLP layer jointly. */
export function agreement(blocks: BlockStats[], m: PartFigures, e: Exclude<Estimator, 'measured'>): { blocks: number; sublayers: number } {
  const v = estimatorValues(blocks, e);
  const pairs = (est: number[], meas: (number | null)[]) => est.map((x, i) => [x, meas[i]] as const).filter((p): p is readonly [number, number] => p[1] !== null && Number.isFinite(p[0]));
  const bp = pairs(v.block, m.block);
  const sp = [...pairs(v.attn, m.attn), ...pairs(v.mlp, m.mlp)];
  const round = (x: number) => (Number.isFinite(x) ? Math.round(x * 1000) / 1000 : NaN);
  return { blocks: round(spearman(bp.map((p) => p[0]), bp.map((p) => p[1]))), sublayers: round(spearman(sp.map((p) => p[0]), sp.map((p) => p[1]))) };
}

/**
 * The partial cut of every sublayer that the analysis measures: the lower-ranked half of its units by the
 * entropy power of their activations (the default plan's ranking), whole KV groups for attention. share: the
 * removed units' part of the sublayer's summed entropy power. A sublayer with a single unit (one KV group)
 * gets no cut: removing it is the whole removal.
 */
export function halfCuts(blocks: { attention: { nHead: number; nKvHead: number; headEntropy: number[] } | null; mlp: { channelEntropy: number[] } | null }[], headDim: number) {
  const lowestHalf = (v: number[]) => {
    const order = v.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const cut = order.slice(0, Math.floor(v.length / 2)).map((p) => p[1]);
    const total = v.reduce((a, b) => a + b, 0);
    return { cut, share: total > 0 ? cut.reduce((a, i) => a + v[i], 0) / total : null };
  };
  return blocks.map((b) => {
    let attn: { heads: number[]; share: number | null } = { heads: [], share: null };
    if (b.attention && b.attention.nKvHead >= 2) {
      const G = b.attention.nHead / b.attention.nKvHead;
      const power = b.attention.headEntropy.map((H) => entropyPower(H, headDim));
      const groups = Array.from({ length: b.attention.nKvHead }, (_, g) => power.slice(g * G, (g + 1) * G).reduce((a, x) => a + x, 0));
      const h = lowestHalf(groups);
      attn = { heads: h.cut.sort((x, y) => x - y).flatMap((g) => Array.from({ length: G }, (_, i) => g * G + i)), share: h.share };
    }
    let mlp: { channels: number[]; share: number | null } = { channels: [], share: null };
    if (b.mlp && b.mlp.channelEntropy.length >= 2) {
      const m = lowestHalf(b.mlp.channelEntropy.map((H) => entropyPower(H)));
      mlp = { channels: m.cut.sort((x, y) => x - y), share: m.share };
    }
    return { attn, mlp };
  });
}
