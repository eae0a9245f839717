// DFS compensation (docs/METHOD.md section 4b): after the per-unit pass, remove whole blocks / attention layers /
// MLP layers so the pruned total lands in [R, R + tol·ΣN] with the least total importance (transfer
// entropy), never a block together with one of its own layers. Depth-first over candidates sorted by
// importance, with branch-and-bound (a branch stops when its cost reaches the best found or when the
// remaining candidates cannot reach R) and a node limit that makes it anytime. Greedy is the ablation.

export interface Candidate {
  kind: 'block' | 'attn' | 'mlp';
  block: number;
  params: number;
  importance: number;
}

export interface SearchResult {
  chosen: Candidate[];
  removed: number;
  cost: number;
  nodes: number;
  /** the removed total lies inside the window */
  inWindow: boolean;
  /** the node limit stopped the search before it proved optimality */
  truncated: boolean;
}

function conflicts(a: Candidate, b: Candidate): boolean {
  return a.block === b.block && (a.kind === 'block' || b.kind === 'block');
}

/**
 * When no set lands in the window: 'overshoot' takes the smallest overshoot (docs/METHOD.md); 'undershoot' takes
 * the largest removal that stays below the window (then the least importance), leaving the rest to the
 * planner's channel fill — the default, since it keeps the achieved ratio within tolerance.
 */
export type SearchFallback = 'overshoot' | 'undershoot';

export function dfsSearch(candidates: Candidate[], need: number, windowHi: number, nodeLimit = 2_000_000, fallback: SearchFallback = 'overshoot'): SearchResult {
  const c = [...candidates].filter((x) => x.params > 0).sort((a, b) => a.importance - b.importance || b.params - a.params);
  if (need <= 0) return { chosen: [], removed: 0, cost: 0, nodes: 0, inWindow: true, truncated: false };
  const suffix = new Array<number>(c.length + 1).fill(0);
  for (let i = c.length - 1; i >= 0; i--) suffix[i] = suffix[i + 1] + c[i].params;
  let best: number[] | null = null;
  let bestCost = Infinity;
  let nodes = 0;
  const stack: number[] = [];
  const visit = (i: number, sum: number, cost: number): void => {
    if (++nodes > nodeLimit) return;
    if (cost >= bestCost) return;
    if (sum >= need) {
      best = [...stack];
      bestCost = cost;
      return;
    }
    if (i >= c.length || sum + suffix[i] < need) return;
    const x = c[i];
    if (sum + x.params <= windowHi && !stack.some((j) => conflicts(c[j], x))) {
      stack.push(i);
      visit(i + 1, sum + x.params, cost + Math.max(0, x.importance));
      stack.pop();
    }
    visit(i + 1, sum, cost);
  };
  visit(0, 0, 0);
  const truncated = nodes > nodeLimit;
  if (best) {
    const chosen = (best as number[]).map((j) => c[j]);
    return { chosen, removed: chosen.reduce((s, x) => s + x.params, 0), cost: bestCost, nodes, inWindow: true, truncated };
  }
  if (fallback === 'undershoot') {
    let ub: number[] = [];
    let ubSum = 0;
    let ubCost = 0;
    let ubNodes = 0;
    const visit3 = (i: number, sum: number, cost: number): void => {
      if (++ubNodes > nodeLimit) return;
      if (sum > ubSum || (sum === ubSum && cost < ubCost)) {
        ub = [...stack];
        ubSum = sum;
        ubCost = cost;
      }
      if (i >= c.length || sum + suffix[i] < ubSum) return;
      const x = c[i];
      if (sum + x.params <= windowHi && !stack.some((j) => conflicts(c[j], x))) {
        stack.push(i);
        visit3(i + 1, sum + x.params, cost + Math.max(0, x.importance));
        stack.pop();
      }
      visit3(i + 1, sum, cost);
    };
    visit3(0, 0, 0);
    const chosen = ub.map((j) => c[j]);
    return { chosen, removed: ubSum, cost: ubCost, nodes: nodes + ubNodes, inWindow: false, truncated: truncated || ubNodes > nodeLimit };
  }
  // Nothing fits the window: the smallest overshoot (then the least importance) among compatible sets.
  let fb: number[] = [];
  let fbOver = Infinity;
  let fbCost = Infinity;
  let fbNodes = 0;
  const visit2 = (i: number, sum: number, cost: number): void => {
    if (++fbNodes > nodeLimit) return;
    if (sum >= need) {
      const over = sum - need;
      if (over < fbOver || (over === fbOver && cost < fbCost)) {
        fb = [...stack];
        fbOver = over;
        fbCost = cost;
      }
      return;
    }
    if (i >= c.length || sum + suffix[i] < need || sum - need >= fbOver) return;
    const x = c[i];
    // ≤: a set that ties the best overshoot is still visited, so the lower importance among ties wins
    if (!stack.some((j) => conflicts(c[j], x)) && sum + x.params - need <= fbOver) {
      stack.push(i);
      visit2(i + 1, sum + x.params, cost + Math.max(0, x.importance));
      stack.pop();
    }
    visit2(i + 1, sum, cost);
  };
  visit2(0, 0, 0);
  const chosen = fb.map((j) => c[j]);
  return { chosen, removed: chosen.reduce((s, x) => s + x.params, 0), cost: fbCost === Infinity ? 0 : fbCost, nodes: nodes + fbNodes, inWindow: false, truncated: truncated || fbNodes > nodeLimit };
}

export function greedySearch(candidates: Candidate[], need: number, windowHi: number): SearchResult {
  const c = [...candidates].filter((x) => x.params > 0).sort((a, b) => a.importance - b.importance || b.params - a.params);
  const chosen: Candidate[] = [];
  let sum = 0;
  let cost = 0;
  for (const x of c) {
    if (sum >= need) break;
    if (chosen.some((y) => conflicts(x, y))) continue;
    if (sum + x.params > windowHi) continue;
    chosen.push(x);
    sum += x.params;
    cost += Math.max(0, x.importance);
  }
  return { chosen, removed: sum, cost, nodes: c.length, inWindow: sum >= need && sum <= windowHi, truncated: false };
}
