// Block ratios from transfer entropy (docs/METHOD.md section 4b, Algorithm 1): s_l = TE_l / mean TE, raw weights
// w_l = s_l^(−β), p_l = min(p_max, c·w_l) with the one c ≥ 0 that makes Σ p_l N_l = p Σ N_l (water-filling).

export function waterFillRatios(te: number[], sizes: number[], target: number, temperature = 1, maxBlockRatio = 0.9): number[] {
  const L = te.length;
  if (L === 0) return [];
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total === 0) return te.map(() => 0);
  if (target * total > maxBlockRatio * total + 1e-12) throw new Error(`target ratio ${target} exceeds maxBlockRatio ${maxBlockRatio}`);
  const mean = te.reduce((a, b) => a + b, 0) / L;
  // No positive mean TE (every block ≤ 0, or values that cancel): the scores s_l are undefined (0/0 or of the wrong
  // sign), and they made NaN or 0 ratios that let the per-unit pass remove every unit. Every block gets the target.
  if (!(mean > 0)) return te.map(() => target);
  // A block with TE ≤ 0 carries no unique information about the output: give it the largest weight.
  const floor = Math.max(1e-12, Math.min(...te.filter((t) => t > 0).map((t) => t / mean), 1) * 1e-3);
  const w = te.map((t) => Math.pow(Math.max(t / mean, floor), -temperature));
  const pruned = (c: number) => w.reduce((s, wl, l) => s + Math.min(maxBlockRatio, c * wl) * sizes[l], 0);
  // At most what the cap allows: Σ p_max·N_l can round below p_max·ΣN_l, and a target equal to the cap then
  // was never reached (the bracket below doubled forever).
  const goal = Math.min(target * total, sizes.reduce((s, n) => s + maxBlockRatio * n, 0));
  let lo = 0;
  let hi = 1;
  while (pruned(hi) < goal) hi *= 2;
  // Bisect until lo and hi are neighbouring doubles: a fixed 200 halvings of [0, 1] stop at a width of 6e-61,
  // far above the c of a block weighted 1e64 (TE 1e-4 of the mean at β = 16), which then missed the target.
  for (;;) {
    const mid = (lo + hi) / 2;
    if (mid <= lo || mid >= hi) break;
    if (pruned(mid) < goal) lo = mid;
    else hi = mid;
  }
  return w.map((wl) => Math.min(maxBlockRatio, hi * wl));
}
