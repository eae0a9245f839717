// Seeded randomness shared by calibration sampling and task subsets, so a seed means the same thing everywhere.
/** mulberry32: a tiny, portable 32-bit generator (JS numbers only, identical everywhere). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` distinct indices of [0, size), chosen by a seeded Fisher–Yates shuffle and returned in ascending order. */
export function seededSubset(size: number, n: number, seed: number): number[] {
  const idx = Array.from({ length: size }, (_, i) => i);
  const rand = seededRandom(seed);
  const k = Math.min(n, size);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rand() * (size - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, k).sort((a, b) => a - b);
}
