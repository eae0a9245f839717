// Block ratios from transfer entropy (docs/METHOD.md section 4b, Algorithm 1): s_l = TE_l / mean TE, raw weights
// w_l = s_l^(−β), p_l = min(p_max, c·w_l) with the one c ≥ 0 that makes Σ p_l N_l = p Σ N_l (water-filling).

export function waterFillRatios(te: number[], sizes: number[], target: number, temperature = 1, maxBlockRatio = 0.9): number[] {
  const L = te.length;
  if (L === 0) return [];
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total === 0) return te.map(() => 0);
  if (target * total > maxBlockRatio * total + 1e-12) throw new Error(`target ratio ${target} exceeds maxBlockRatio ${maxBlockRatio}`);
  const mean = te.reduce((a, b) => a + b, 0) / L;
  // A block with TE ≤ 0 carries no unique information about the output: give it the largest weight.
  const floor = Math.max(1e-12, Math.min(...te.filter((t) => t > 0).map((t) => t / mean), 1) * 1e-3);
  const w = te.map((t) => Math.pow(Math.max(t / mean, floor), -temperature));
  const pruned = (c: number) => w.reduce((s, wl, l) => s + Math.min(maxBlockRatio, c * wl) * sizes[l], 0);
  let lo = 0;
  let hi = 1;
  while (pruned(hi) < target * total) hi *= 2;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (pruned(mid) < target * total) lo = mid;
    else hi = mid;
  }
  return w.map((wl) => Math.min(maxBlockRatio, hi * wl));
}
