// Parameter accounting, in one place for the planner, the validator and every report (docs/METHOD.md section 6):
// the ratio counts the linear weights inside the blocks — attention q, k, v, o and MLP gate, up, down — plus
// the biases bias compensation adds; norms, embeddings and the LM head are excluded (FLAP / SliceGPT).
// Reports also give the whole-model ratio.

export interface LayerShapeCount {
  nHead: number;
  nKvHead: number;
  ffn: number;
  attnOutBias?: boolean;
  ffnDownBias?: boolean;
}

export function attentionParams(dim: number, headDim: number, nHead: number, nKvHead: number): number {
  return 2 * dim * nHead * headDim + 2 * dim * nKvHead * headDim;
}

export function mlpParams(dim: number, ffn: number): number {
  return 3 * dim * ffn;
}

/** Parameters of one query head (its q rows and o columns). */
export const queryHeadParams = (dim: number, headDim: number) => 2 * dim * headDim;
/** Parameters of one KV head alone (its k and v rows), without its query heads. */
export const kvHeadParams = (dim: number, headDim: number) => 2 * dim * headDim;
/** Parameters of one MLP channel (a row of gate and up, a column of down). */
export const channelParams = (dim: number) => 3 * dim;

export function blockParams(dim: number, headDim: number, s: LayerShapeCount): number {
  return (
    attentionParams(dim, headDim, s.nHead, s.nKvHead) + mlpParams(dim, s.ffn) + (s.attnOutBias ? dim : 0) + (s.ffnDownBias ? dim : 0)
  );
}

export function countedParams(dim: number, headDim: number, layers: LayerShapeCount[]): number {
  return layers.reduce((sum, s) => sum + blockParams(dim, headDim, s), 0);
}

/** Whole model: blocks + their norms + embedding (+ untied head) + final norm. */
export function wholeModelParams(dim: number, headDim: number, vocab: number, tied: boolean, layers: LayerShapeCount[]): number {
  const norms = layers.reduce((n, s) => n + (s.nHead > 0 ? dim : 0) + (s.ffn > 0 ? dim : 0), 0);
  return countedParams(dim, headDim, layers) + norms + dim + vocab * dim * (tied ? 1 : 2);
}
