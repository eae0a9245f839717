// Random but well-formed analyses for planner tests (no model needed).
import type { Analysis } from '../../lib';

export function syntheticAnalysis(opts: {
  seed: number;
  blocks: number;
  dim: number;
  headDim: number;
  nHead: number;
  nKvHead: number;
  ffn: number;
}): Analysis {
  let s = opts.seed >>> 0 || 1;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  const layers = Array.from({ length: opts.blocks }, () => ({ nHead: opts.nHead, nKvHead: opts.nKvHead, ffn: opts.ffn }));
  return {
    format: 'entroprune.analysis',
    version: 1,
    createdBy: 'test',
    model: { path: 'synthetic', format: 'gguf', arch: 'llama', dim: opts.dim, vocab: 1000, headDim: opts.headDim, layers, identity: '0'.repeat(64) },
    calibration: { file: 'x', kind: 'tokens', streamTokens: 1, samples: 1, seqLen: 2, seed: 0, tokens: 1, projected: false, jointDim: 1, maxDim: 1024, projDim: 512, ridge: 1e-6 },
    blocks: layers.map((l, index) => {
      const teAttn = 0.2 + rnd() * 3;
      const teMlp = 0.2 + rnd() * 6;
      return {
        index,
        te: teAttn + teMlp + rnd(),
        teAttn,
        teMlp,
        cosine: 0.5 + rnd() * 0.5,
        maxRidgeEffect: 0,
        attention: { nHead: l.nHead, nKvHead: l.nKvHead, headEntropy: Array.from({ length: l.nHead }, () => rnd() * 4 - 1), headEnergy: Array.from({ length: l.nHead }, () => rnd()) },
        mlp: { width: l.ffn, channelEntropy: Array.from({ length: l.ffn }, () => rnd() * 3 - 1), channelEnergy: Array.from({ length: l.ffn }, () => rnd()) },
      };
    }),
    means: { file: 'x', sha256: 'x', entries: [] },
  };
}
