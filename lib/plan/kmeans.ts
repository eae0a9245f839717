// 1-D K-means on unit entropies (docs/METHOD.md section 4b): deterministic — centroids start at evenly spaced
// quantiles, points go to the nearest centroid (the lower one on ties), iterate until nothing moves.

export interface Clustering {
  /** cluster index of every point; clusters are numbered by ascending centroid */
  assignment: number[];
  centroids: number[];
  iterations: number;
}

export function kmeans1d(values: number[], k: number, maxIterations = 100): Clustering {
  const n = values.length;
  if (n === 0) return { assignment: [], centroids: [], iterations: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const kk = Math.max(1, Math.min(k, new Set(sorted).size));
  let centroids = Array.from({ length: kk }, (_, i) => sorted[Math.min(n - 1, Math.floor(((i + 0.5) / kk) * n))]);
  centroids = [...new Set(centroids)].sort((a, b) => a - b);
  let assignment = new Array<number>(n).fill(-1);
  let iterations = 0;
  for (; iterations < maxIterations; iterations++) {
    const next = values.map((v) => {
      let best = 0;
      for (let c = 1; c < centroids.length; c++) if (Math.abs(v - centroids[c]) < Math.abs(v - centroids[best])) best = c;
      return best;
    });
    const moved = next.some((a, i) => a !== assignment[i]);
    assignment = next;
    if (!moved) break;
    centroids = centroids.map((c, ci) => {
      const members = values.filter((_, i) => assignment[i] === ci);
      return members.length ? members.reduce((a, b) => a + b, 0) / members.length : c;
    });
  }
  // Drop empty clusters and renumber by ascending centroid.
  const used = [...new Set(assignment)].sort((a, b) => centroids[a] - centroids[b]);
  const remap = new Map(used.map((c, i) => [c, i]));
  return { assignment: assignment.map((a) => remap.get(a)!), centroids: used.map((c) => centroids[c]), iterations };
}

/** K for a target ratio: 3 at 0.3, 4 at 0.4 and 6 at 0.5 (the paper's values); nearest of those otherwise. */
export function defaultK(ratio: number): number {
  if (ratio < 0.35) return 3;
  if (ratio < 0.45) return 4;
  return 6;
}
