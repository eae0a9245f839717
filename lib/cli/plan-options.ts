// The planner's command-line options, declared once for `plan` and `prune`, and turned into PlanOptions in one
// place, so both commands offer the same choices with the same defaults and build the same plan.
import { Command, InvalidArgumentError, Option } from 'commander';

import type { PlanMethod } from '../plan/plan';
import type { PlanOptions } from '../plan/planner';
import { floatOption, intOption } from './options';

export interface PlannerCliOptions {
  method: PlanMethod['name'];
  importance?: PlanMethod['importance'];
  allocation: 'marginal' | 'paper';
  estimator?: 'measured' | 'stream-te' | 'output-te';
  curvature?: number | 'measured';
  cutDamage?: 'refit' | 'variance';
  search: PlanMethod['search'];
  ratios: PlanMethod['ratios'];
  compensation: boolean;
  granularity: PlanMethod['granularity'];
  k?: number;
  align: number;
  alignHeads: number;
  uniform?: boolean;
  temperature: number;
  maxBlockRatio: number;
  tolerance: number;
  searchLimit: number;
  searchFallback?: 'undershoot' | 'overshoot';
}

export function ratioOption(v: string): number {
  const r = Number(v);
  if (!(r > 0 && r < 1)) throw new InvalidArgumentError('ratio must lie strictly between 0 and 1');
  return r;
}

/** Add the planner's options (everything but --ratio) to a command. */
export function addPlannerOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--method <name>', 'entropy (entroprune\'s method) or a baseline').choices(['entropy', 'uniform', 'block-drop', 'layer-drop']).default('entropy'))
    .addOption(new Option('--importance <metric>', 'unit ranking (docs/METHOD.md section 3; default contribution where the analysis has its refit-aware damage, else entropy, the paper\'s)').choices(['entropy', 'contribution', 'activation', 'weight']))
    .addOption(new Option('--allocation <kind>', 'marginal: units across all blocks by damage per parameter (default); paper: docs/METHOD.md\'s water-filling, 1/TE split, K-means and DFS').choices(['marginal', 'paper']).default('marginal'))
    .addOption(new Option('--estimator <e>', 'sublayer importance: measured damage (default when the analysis has it), stream-te, or output-te (the paper\'s first reading)').choices(['measured', 'stream-te', 'output-te']))
    .option('--curvature <g>', 'γ of the marginal allocation\'s damage model S·F^γ (default 1), or "measured": each sublayer\'s own, from an analysis made with --half-cuts', (v: string) => {
      if (v === 'measured') return v;
      const g = Number(v);
      if (!(Number.isFinite(g) && g >= 1 && g <= 16)) throw new InvalidArgumentError('curvature must be a number in [1, 16] or "measured"');
      return g;
    })
    .addOption(new Option('--cut-damage <model>', 'a partial cut\'s damage: refit (what least-squares compensation cannot restore; default when the analysis has it) or variance (the removed units\' variance share, the bias compensation\'s view; docs/METHOD.md section 4a)').choices(['refit', 'variance']))
    .addOption(new Option('--search <kind>', 'remaining-ratio search').choices(['dfs', 'greedy']).default('dfs'))
    .addOption(new Option('--ratios <kind>', 'per-block ratios').choices(['dynamic', 'uniform']).default('dynamic'))
    .option('--no-compensation', 'do not fold removed units\' means into biases')
    .addOption(new Option('--granularity <g>', 'which units may go').choices(['multi', 'width-only', 'depth-only']).default('multi'))
    .option('--k <n>', 'K-means clusters per layer (default: 3 at 30 %, 4 at 40 %, 6 at 50 %)', intOption('k', 1))
    .option('--align <n>', 'kept MLP widths rounded to multiples of N (e.g. 256 for llama.cpp K-quants)', intOption('align', 1), 1)
    .option('--align-heads <n>', 'kept query-head counts rounded to multiples of N', intOption('align-heads', 1), 1)
    .option('--uniform', 'one shape for every block (a stock Llama config; Hugging Face output needs it)')
    .option('--temperature <x>', 'β in w = s^-β', floatOption('temperature', 0), 1)
    .option('--max-block-ratio <x>', 'cap on any block\'s ratio', floatOption('max-block-ratio', 0), 0.9)
    .option('--tolerance <x>', 'window above the target for the search', floatOption('tolerance', 0), 0.005)
    .option('--search-limit <n>', 'DFS node limit', intOption('search-limit', 1), 2_000_000)
    .addOption(new Option('--search-fallback <f>', 'when no set fits the window: undershoot + channel fill, or the smallest overshoot (docs/METHOD.md)').choices(['undershoot', 'overshoot']));
}

/** PlanOptions from the parsed options (the ratio and where the plan comes from are the caller's). */
export function plannerOptions(o: PlannerCliOptions): Omit<PlanOptions, 'ratio'> {
  return {
    method: o.method,
    importance: o.importance,
    search: o.search,
    ratios: o.ratios,
    compensation: o.compensation,
    granularity: o.granularity,
    k: o.k,
    align: o.align,
    alignHeads: o.alignHeads,
    uniformShape: o.uniform ?? false,
    temperature: o.temperature,
    maxBlockRatio: o.maxBlockRatio,
    tolerance: o.tolerance,
    searchLimit: o.searchLimit,
    searchFallback: o.searchFallback,
    allocation: o.allocation,
    estimator: o.estimator,
    curvature: o.curvature,
    cutDamage: o.cutDamage,
  };
}
