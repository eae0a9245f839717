// The only place that loads the compiled addon, and the one declaration of its whole surface.
// node-gyp-build looks in build/Release first, then prebuilds/<platform>-<arch>/.
import * as path from 'node:path';

export interface NativeLayerShape {
  nHead: number;
  nKvHead: number;
  ffn: number;
  attnQkvBias: boolean;
  attnOutBias: boolean;
  ffnDownBias: boolean;
}

export interface NativeModelInfo {
  path: string;
  format: 'hf' | 'gguf' | 'llama2c';
  arch: string;
  dim: number;
  vocab: number;
  headDim: number;
  context: number;
  slidingWindow: number;
  normEps: number;
  ropeTheta: number;
  ropeLayout: 'interleaved' | 'half';
  ropeScaling: string;
  tiedOutput: boolean;
  bos: number;
  eos: number;
  layers: NativeLayerShape[];
  parameterCount: number;
  blockLinearParameterCount: number;
  convertedBytes: number;
  /** loaded with streamLayers: BF16/F16 block matrices are converted when a pass reaches their block */
  streamsLayers: boolean;
  hasEmbeddedVocab: boolean;
}

export interface NativeEvaluateOptions {
  tokens: Int32Array;
  nSeqs: number;
  seqLen: number;
  batchSeqs?: number;
  output?: 'nll' | 'logits';
  /** GPUs that compute the loss (block-major, the output head on the GPU); none: the CPU. Logits always come from the CPU. */
  cudaDevices?: number[];
  precision?: 'bf16' | 'f16' | 'f32';
}

export interface NativeScoreOptions {
  /** all sequences back to back */
  tokens: Int32Array;
  /** tokens in each sequence */
  lengths: Int32Array;
  /** first scored position of each sequence (1 <= target < length) */
  targets: Int32Array;
  /** padded tokens per forward call (default 8192) */
  batchTokens?: number;
  /** GPUs that score (block-major, the output head on the GPU); none: the CPU */
  cudaDevices?: number[];
  precision?: 'bf16' | 'f16' | 'f32';
}

export interface NativeScores {
  /** summed log-probability of each target span */
  logprob: Float64Array;
  /** 1 when every target token is the greedy prediction */
  greedy: Uint8Array;
}

export interface NativeGeneration {
  tokens: Int32Array;
  prefillSeconds: number;
  decodeSeconds: number;
  decodeSteps: number;
  cacheBytes: number;
}

export interface NativeJob<T> {
  promise: Promise<T>;
  cancel(): void;
}

export interface NativeAnalyzeOptions {
  tokens: Int32Array;
  nSeqs: number;
  seqLen: number;
  batchSeqs: number;
  maxDim: number;
  projDim: number;
  seed: number;
  ridge: number;
  /** precision of the joint covariance cross-products (default auto: float64 up to 1024 wide, else float32) */
  products?: CovarianceProducts;
  /** block-major layer streaming (two passes; bit-identical results) instead of batch-major */
  stream?: boolean;
  /** run the blocks on these CUDA devices, the batches split between them (implies stream); absent = the CPU */
  cudaDevices?: number[];
  /** the GPU's matrix-product precision (default bf16: f16 activations can overflow) */
  precision?: 'bf16' | 'f16' | 'f32';
}

/** float32 = blocked ssyrk into float64 sums; float64 = dsyrk; auto = float64 while the joint vector is ≤ 1024 wide */
export type CovarianceProducts = 'auto' | 'float32' | 'float64';

export interface NativeBlockAnalysis {
  hasAttn: boolean;
  hasMlp: boolean;
  te: number;
  teAttn: number;
  teMlp: number;
  /** stream-targeted TE (I(h + x + ε; x | h)) of the block update, its attention and its MLP */
  teStream: number;
  teStreamAttn: number;
  teStreamMlp: number;
  /** variance each head / channel adds to the residual stream */
  headContribution: Float64Array;
  channelContribution: Float64Array;
  cosine: number;
  maxRidgeEffect: number;
  /** relative ridge the block's TE terms used: the requested one, or raised 10× at a time up to 1e-2 */
  ridge: number;
  headEntropy: Float64Array;
  headEnergy: Float64Array;
  channelEntropy: Float64Array;
  channelEnergy: Float64Array;
  headMean: Float64Array;
  channelMean: Float64Array;
  attnOutMean: Float64Array;
  mlpOutMean: Float64Array;
}

export interface NativeAnalysis {
  tokens: number;
  jointDim: number;
  /** the joint moments' cross-product precision actually used ('auto' resolved) */
  products: Exclude<CovarianceProducts, 'auto'>;
  projected: boolean;
  ridge: number;
  blocks: NativeBlockAnalysis[];
  /** what ran the blocks: "cpu" or the GPU runner's description (device, precision, GEMM backend) */
  device: string;
  /** GPU memory the calibration held at most (0 on the CPU) */
  peakDeviceBytes: number;
  /** seconds: the windows through the model with the capture; the estimators; block-major only (else 0):
   * its pass without and its pass with the capture */
  calibrateSeconds: number;
  estimatorsSeconds: number;
  forwardSeconds: number;
  captureSeconds: number;
}

/** per block: one figure for removing its attention, its MLP, the whole block (NaN where absent) */
export interface NativeDamage {
  attn: Float64Array;
  mlp: Float64Array;
  block: Float64Array;
}

export interface NativeModel {
  info(): NativeModelInfo;
  analyze(options: NativeAnalyzeOptions, onProgress?: (done: number, total: number) => void): NativeJob<NativeAnalysis>;
  /** measured sensitivities: held-out loss increase from removing each block / attention / MLP alone (NaN where absent) */
  measureRemovalDamage(
    options: {
      tokens: Int32Array;
      nSeqs: number;
      seqLen: number;
      attnOutMean?: Float64Array[];
      mlpOutMean?: Float64Array[];
      /** partial cuts, per block: query heads / channels removed, and their means (head_dim or 1 per unit) */
      attnCut?: Int32Array[];
      attnCutMeans?: Float64Array[];
      mlpCut?: Int32Array[];
      mlpCutMeans?: Float64Array[];
      /** GPUs that run it (block-major, native/core/measure/sensitivity_block_major.cpp); absent: the CPU */
      cudaDevices?: number[];
      precision?: 'bf16' | 'f16' | 'f32';
    },
    onProgress?: (done: number, total: number) => void,
  ): NativeJob<{ baseNll: number; nll: NativeDamage; kl: NativeDamage; partial?: { nll: NativeDamage; kl: NativeDamage } }>;
  /**
   * The refit-aware damage of partial cuts (native/core/measure/refit_damage.h): per set of orders (one per unit
   * ranking) and block, each unit's step when the sublayer's units (KV groups; channels) go in the given order
   * and the kept ones are refitted by least squares, by unit index. An empty order skips that sublayer. Captures
   * the layers' input covariances once, in calibration passes of at most memoryBudget accumulator bytes.
   */
  refitDamage(
    options: {
      tokens: Int32Array;
      nSeqs: number;
      seqLen: number;
      batchSeqs: number;
      memoryBudget: number;
      orders: { attn: Int32Array[]; mlp: Int32Array[] }[];
      /** the capture's blocks on the first of these GPUs (the covariances on the CPU); absent: the CPU */
      cudaDevices?: number[];
      precision?: 'bf16' | 'f16' | 'f32';
    },
    onProgress?: (done: number, total: number) => void,
  ): NativeJob<{ steps: { attn: Float64Array[]; mlp: Float64Array[] }[]; passes: number }>;
  tensorDirectory(): string;
  /** per layer: ‖Wq_h‖²+‖Wo[:,h]‖² per query head; ‖gate_j‖²+‖up_j‖²+‖down[:,j]‖² per channel */
  unitWeightMagnitudes(): { heads: number[][]; channels: number[][] };
  evaluate(options: NativeEvaluateOptions, onProgress?: (done: number, total: number) => void): NativeJob<Float32Array>;
  score(options: NativeScoreOptions, onProgress?: (done: number, total: number) => void): NativeJob<NativeScores>;
  /** greedy decoding through the KV cache, prefill and decode timed apart */
  generate(options: { prompt: Int32Array; tokens: number }): NativeJob<NativeGeneration>;
  embeddedVocab(): NativeSpmTokenizer | null;
  /** drop this handle's reference to the native model (freed when no running job holds it) */
  dispose(): void;
}

export interface NativeSpmTokenizer {
  encode(text: string, addBos: boolean): Int32Array;
  /** every text's ids back to back, off the main thread */
  encodeAll(texts: string[], addBos: boolean): NativeJob<{ flat: Int32Array; lengths: Int32Array }>;
  /** drop the vocabulary (freed when no running job holds it) */
  dispose(): void;
  decode(ids: Int32Array): string;
  readonly size: number;
  readonly bos: number;
  readonly eos: number;
}

export interface CudaProbe {
  compiled: boolean;
  available: boolean;
  driverVersion: number;
  runtimeVersion: number;
  message: string;
  devices: { index: number; name: string; computeCapability: string; totalMemory: number }[];
}

export interface SyntheticModelSpec {
  dim: number;
  vocab: number;
  headDim: number;
  layers: { nHead: number; nKvHead: number; ffn: number; attnOutBias?: boolean; ffnDownBias?: boolean }[];
  seed?: number;
  normEps?: number;
  ropeTheta?: number;
  context?: number;
  tiedOutput?: boolean;
  weightScale?: number;
}

export interface NativeApplyOptions {
  blocks: { removed: boolean; attnRemoved: boolean; mlpRemoved: boolean; keptKvHeads: number[]; keptHeads: number[]; keptChannels: number[]; compensate: boolean }[];
  means?: { headMean?: Float64Array; channelMean?: Float64Array; attnOutMean?: Float64Array; mlpOutMean?: Float64Array }[];
  output: string;
  format: 'gguf' | 'hf' | 'llama2c';
  dtype: 'f32' | 'f16' | 'bf16';
  zero: boolean;
  vocabFile?: string;
  /** a vocabulary converted from tokenizer.json (GGUF output from a Hugging Face source) */
  vocab?: NativeSpmTokenizer;
  shardBytes?: number;
  /** least-squares compensation: refit the partly cut layers on these windows first (core/apply/refit.h) */
  refit?: {
    tokens: Int32Array;
    nSeqs: number;
    seqLen: number;
    batchSeqs?: number;
    damping?: number;
    memoryBudget?: number;
    /** the capture's blocks on the first of these GPUs (its accumulators stay on the CPU); absent: the CPU */
    cudaDevices?: number[];
    precision?: 'bf16' | 'f16' | 'f32';
    /** moments kept from earlier refits on the same windows (createRefitMomentCache): a layer captured once */
    cache?: RefitMomentCache;
  };
}

/** An opaque native handle: input moments of refitted layers, shared by the refits of several plans (core/apply/refit.h). */
export interface RefitMomentCache {
  readonly __refitMomentCache: unique symbol;
}

/** What least-squares compensation reports: layers refitted, calibration passes run, layers solved from the cache. */
export interface NativeRefitReport {
  layers: number;
  passes: number;
  cached: number;
  moreDamping: number;
  fallbacks: number;
}

/**
 * What measurePlanLoss gives back: mean next-token NLL (nats per predicted token) and mean KL from the unpruned
 * model's next-token distribution (per position; the unit of the measured sensitivities).
 */
export interface NativePlanLoss {
  intactNll: number;
  plan: { nll: number; kl: number };
  /** per block: the pruned model with that block's partly cut attention / MLP restored alone; NaN where not measured */
  attnRestored: { nll: Float64Array; kl: Float64Array };
  mlpRestored: { nll: Float64Array; kl: Float64Array };
  refit?: NativeRefitReport;
}

export interface NativeBinding {
  /**
   * The loss of the model applyPlan would write for these blocks (means and refit as applyPlan takes them), and with
   * leaveOneOut of it with each partly cut layer restored alone, on tokens, without writing it
   * (native/core/measure/plan_loss.h).
   */
  measurePlanLoss(
    model: NativeModel,
    options: Pick<NativeApplyOptions, 'blocks' | 'means' | 'refit'> & {
      tokens: Int32Array;
      nSeqs: number;
      seqLen: number;
      leaveOneOut: boolean;
      memoryBudget?: number;
      /** the loss on the first of these GPUs (block-major); absent: the CPU. The refit's capture runs on the CPU. */
      cudaDevices?: number[];
      precision?: 'bf16' | 'f16' | 'f32';
    },
    onProgress?: (done: number, total: number) => void,
  ): NativeJob<NativePlanLoss>;
  applyPlan(model: NativeModel, options: NativeApplyOptions, onProgress?: (done: number, total: number) => void): NativeJob<{ layers: number; tensors: number; refit?: NativeRefitReport }>;
  /** a cache of refit input moments holding at most budgetBytes (pass it as refit.cache) */
  createRefitMomentCache(budgetBytes: number): RefitMomentCache;
  NativeSpmTokenizer: new (source: string | { pieces: string[]; scores: Float32Array; bos: number; eos: number; source: string }) => NativeSpmTokenizer;
  loadModel(path: string, options?: { streamLayers?: boolean }, onProgress?: (done: number, total: number) => void): NativeJob<NativeModel>;
  setThreads(n: number): number;
  getThreads(): number;
  cudaProbe(): CudaProbe;
  /** MemAvailable or ENTROPRUNE_MEMORY_LIMIT in bytes, 0 when unknown: the figure every memory check uses */
  availableMemory(): number;
  writeSyntheticGguf(spec: SyntheticModelSpec, path: string): void;
  writeSyntheticModel(
    spec: { preset: string; layers?: number; dtype?: 'f32' | 'f16' | 'bf16'; seed?: number; format: 'gguf' | 'hf' },
    path: string,
    onProgress?: (done: number, total: number) => void,
  ): NativeJob<void>;
  abiVersion: number;
}

let cached: NativeBinding | undefined;

export function native(): NativeBinding {
  if (!cached) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => NativeBinding;
    // dist/lib/native.js -> package root is two levels up; lib/native.ts (vitest) -> one level up.
    const root = path.basename(path.dirname(__dirname)) === 'dist' ? path.resolve(__dirname, '..', '..') : path.resolve(__dirname, '..');
    let binding: NativeBinding;
    try {
      binding = load(root);
    } catch (e) {
      throw loadError(e);
    }
    // An addon built from other sources (a stale build/Release, an old prebuild) would accept options it does
    // not know and silently ignore them (least-squares compensation came out as bias compensation so once).
    if (binding.abiVersion !== NATIVE_ABI_VERSION)
      // a plain Error, as loadError's: native.ts sits below lib/util in the pipeline order (test/layout.test.ts)
      throw new Error(
        `entroprune's native binary under ${root} speaks version ${String(binding.abiVersion)} of the binding, this JavaScript needs ${NATIVE_ABI_VERSION}: rebuild it (npx cmake-js compile, or npm rebuild entroprune)`,
      );
    cached = binding;
  }
  return cached;
}

/** The binding's version, raised with every change to what a native call accepts or returns (native/addon/addon.cpp). */
export const NATIVE_ABI_VERSION = 5;

/** A binary that exists but cannot load for want of a system library says which library, and what to install. */
export function loadError(e: unknown): Error {
  const message = e instanceof Error ? e.message : String(e);
  const lib = /(lib[\w.+-]+\.so[\d.]*): cannot open shared object file/.exec(message)?.[1];
  if (lib) {
    const packages: Record<string, string> = { 'libgomp.so.1': 'libgomp1 (Debian/Ubuntu) or libgomp (RHEL/Fedora)', 'libstdc++.so.6': 'libstdc++6', 'libgcc_s.so.1': 'libgcc-s1' };
    return new Error(`entroprune's native binary cannot load: ${lib} not found: install ${packages[lib] ?? 'the package that provides it'}`, { cause: e });
  }
  if (/GLIBC(XX)?_[\d.]+' not found/.test(message))
    return new Error(`entroprune's native binary needs a newer C library (prebuilds need glibc >= 2.34 and libstdc++ of GCC >= 11): ${message.split('\n')[0]}; build from source with npm rebuild entroprune`, { cause: e });
  return e instanceof Error ? e : new Error(message);
}
