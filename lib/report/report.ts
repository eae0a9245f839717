// The HTML report: one self-contained file (inline CSS and SVG, no network) that shows what the model told
// us (transfer entropy per block, unit entropies with their K-means groups), what the plan did (per-block
// ratios, kept heads and channels), and what it cost (perplexity, accuracy, speed). A few lines of inline
// script only mark each plot as rendered, so a headless browser test can check the page really draws.
import * as path from 'node:path';

import type { CellResult, CompareState } from '../compare/compare';
import { orderedCells } from '../compare/compare';
import type { TaskResult } from '../evaluate/tasks/zero-shot';
import type { Analysis, PartFigures } from '../measure/analysis';
import { blockParams } from '../plan/accounting';
import { prunedShapes, type PlanRefinement, type PruningPlan } from '../plan/plan';
import { writeFileAtomic } from '../util/atomic';
import { VERSION } from '../version';
import { esc, groupedBars, heatMap, lineChart, stackedHistogram } from './svg';

/** One evaluated model: the original or a pruned one. */
export interface EvaluatedModel {
  label: string;
  params: number;
  ratio?: number;
  /** perplexity per evaluation text */
  ppl: number[];
  tasks: TaskResult[];
  averageAccuracy: number | null;
  speedup: number;
  /** repetition figures of greedy continuations of held-out prompts */
  generation?: { repeat4: number; distinct2: number; longestRun: number; looping?: number; prompts?: number };
}

export interface ReportInput {
  title: string;
  modelPath: string;
  analysis: Analysis;
  /** plans to draw (per-block ratios, heat maps, entropy groups) */
  plans: { label: string; plan: PruningPlan }[];
  evalTexts: string[];
  rows: EvaluatedModel[];
  compare?: CompareState;
  notes?: string[];
}

const pct = (x: number) => `${(x * 100).toFixed(1)}`;
const taskAcc = (t: TaskResult) => (t.accNorm ?? t.acc).value;

function resultsTable(input: ReportInput): string {
  const tasks = [...new Set(input.rows.flatMap((r) => r.tasks.map((t) => t.task)))];
  const gen = input.rows.some((r) => r.generation);
  const head = ['model', 'params', ...input.evalTexts.map((f) => `PPL ${path.basename(f)}`), ...tasks, ...(tasks.length ? ['avg'] : []), ...(gen ? ['rep-4', 'distinct-2', 'longest run', 'looping'] : []), 'speed-up'];
  const rows = input.rows.map((r) => [
    r.label,
    r.params >= 1e9 ? `${(r.params / 1e9).toFixed(2)} B` : r.params >= 1e6 ? `${(r.params / 1e6).toFixed(2)} M` : `${(r.params / 1e3).toFixed(0)} K`,
    ...r.ppl.map((x) => (x >= 1e4 ? x.toExponential(2) : x.toFixed(2))),
    ...tasks.map((n) => {
      const t = r.tasks.find((x) => x.task === n);
      return t ? pct(taskAcc(t)) : '–';
    }),
    ...(tasks.length ? [r.averageAccuracy === null ? '–' : pct(r.averageAccuracy)] : []),
    ...(gen ? (r.generation ? [r.generation.repeat4.toFixed(3), r.generation.distinct2.toFixed(3), String(r.generation.longestRun), r.generation.looping === undefined ? '–' : `${r.generation.looping}/${r.generation.prompts}`] : ['–', '–', '–', '–']) : []),
    `${r.speedup.toFixed(2)}×`,
  ]);
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c, i) => `<td${i ? ' class="num"' : ''}>${esc(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>` +
    (gen ? '<p class="note">Greedy continuations (48 tokens) of 8 held-out prompts: rep-4 is the share of 4-grams that repeat an earlier one of the same continuation (loops push it towards 1), distinct-2 the share of distinct bigrams, longest run the longest back-to-back repetition of one token, looping the continuations with a run of 8 or more.</p>' : '') +
    (tasks.length ? '<p class="note">Accuracies in %: acc_norm where the task reports it, acc otherwise (WinoGrande, BoolQ, LAMBADA), as the paper averages them. Speed-up: forward tokens/s over the original\'s, measured side by side in the same run.</p>' : '');
}

function blockRatioSeries(p: PruningPlan): number[] {
  const { dim, headDim, layers } = p.model;
  const kept = prunedShapes(p);
  return layers.map((s, l) => 1 - blockParams(dim, headDim, kept[l]) / blockParams(dim, headDim, s));
}

function headHeat(p: PruningPlan, id: string, label: string): string {
  const maxHeads = Math.max(...p.model.layers.map((s) => s.nHead));
  const values = p.blocks.map((b, l) => {
    const kept = new Set(b.attention.keptHeads);
    return Array.from({ length: maxHeads }, (_, h) => (h < p.model.layers[l].nHead ? (kept.has(h) ? 1 : 0) : null));
  });
  return heatMap(id, `Kept attention heads — ${label}`, p.blocks.map((b) => `block ${b.index}`), maxHeads, values, {
    colLabel: 'query head',
    cellTitle: (r, c, v) => `block ${r}, head ${c}: ${v === null ? 'absent' : v ? 'kept' : 'removed'}`,
  });
}

function channelHeat(p: PruningPlan, id: string, label: string): string {
  const maxFfn = Math.max(...p.model.layers.map((s) => s.ffn));
  const bins = Math.min(64, maxFfn);
  const values = p.blocks.map((b, l) => {
    const ffn = p.model.layers[l].ffn;
    const kept = new Uint8Array(ffn);
    for (const c of b.mlp.keptChannels) kept[c] = 1;
    return Array.from({ length: bins }, (_, k) => {
      const lo = Math.floor((k * maxFfn) / bins), hi = Math.min(ffn, Math.floor(((k + 1) * maxFfn) / bins));
      if (lo >= ffn) return null;
      let n = 0;
      for (let c = lo; c < hi; c++) n += kept[c];
      return hi > lo ? n / (hi - lo) : null;
    });
  });
  return heatMap(id, `Kept MLP channels (share per bin of ${Math.ceil(maxFfn / bins)}) — ${label}`, p.blocks.map((b) => `block ${b.index}`), bins, values, { colLabel: 'channel index (binned)' });
}

/**
 * The values the planner ranked units by, per block, coloured by what the plan did with them: the K-means
 * groups the paper allocation formed (stored in the plan), or kept / removed for the marginal allocation,
 * which forms no groups. Without a plan, the unit entropies alone. Weight magnitudes are not in the analysis:
 * plans ranked by them draw the entropies, coloured the same way.
 */
function entropyGroups(a: Analysis, p: PruningPlan | undefined, idPrefix: string): string {
  const metric = p?.method.importance ?? 'entropy';
  const valuesOf = (b: Analysis['blocks'][number]) => {
    if (metric === 'activation') return { heads: b.attention?.headEnergy, channels: b.mlp?.channelEnergy, label: 'activation energy' };
    if (metric === 'contribution' && b.mlp?.channelContribution) return { heads: b.attention?.headContribution, channels: b.mlp?.channelContribution, label: 'residual contribution' };
    return { heads: b.attention?.headEntropy, channels: b.mlp?.channelEntropy, label: 'entropy (nats)' };
  };
  const out: string[] = [];
  for (const b of a.blocks) {
    const bp = p?.blocks[b.index];
    const v = valuesOf(b);
    const plot = (kind: 'channel' | 'head', values: number[] | undefined, kept: number[] | undefined, groups: number[] | undefined) => {
      if (!values || values.length < 2) return;
      let assignment: number[];
      let names: string[];
      if (groups) {
        assignment = groups;
        const k = Math.max(...groups) + 1;
        const keptSet = new Set(kept ?? []);
        names = Array.from({ length: k }, (_, g) => {
          const members = groups.map((x, i) => (x === g ? i : -1)).filter((i) => i >= 0);
          return `group ${g} (${members.filter((i) => !keptSet.has(i)).length}/${members.length} cut)`;
        });
      } else if (kept) {
        const keptSet = new Set(kept);
        assignment = values.map((_, i) => (keptSet.has(i) ? 1 : 0));
        names = [`removed (${assignment.filter((x) => x === 0).length})`, `kept (${assignment.filter((x) => x === 1).length})`];
      } else {
        assignment = values.map(() => 0);
        names = ['all'];
      }
      const how = groups ? 'the planner\'s K-means groups' : kept ? 'kept / removed' : 'no plan';
      out.push(stackedHistogram(`${idPrefix}-${kind}-${b.index}`, `Block ${b.index}: ${kind} ${v.label} (${how})`, values, assignment, names, { xLabel: `${kind} ${v.label}`, width: 340 }));
    };
    plot('channel', v.channels, bp ? (bp.mlp.removed ? [] : bp.mlp.keptChannels) : undefined, bp?.groups?.channels);
    // heads: the groups are per KV group; every query head of a group shares its label
    const G = b.attention ? b.attention.nHead / Math.max(1, b.attention.nKvHead) : 1;
    const headGroups = bp?.groups?.kvHeads ? Array.from({ length: b.attention?.nHead ?? 0 }, (_, h) => bp.groups!.kvHeads![Math.floor(h / G)]) : undefined;
    plot('head', v.heads, bp ? (bp.attention.removed ? [] : bp.attention.keptHeads) : undefined, headGroups);
  }
  return `<div class="grid">${out.join('')}</div>`;
}

function compareCharts(state: CompareState): string {
  const cells = orderedCells(state);
  const orig = cells.find((c) => c.method === 'original');
  const byMethod = (f: (c: CellResult) => number | null) =>
    state.settings.methods.map((m) => ({
      name: m,
      points: [...(orig ? [[0, f(orig)] as [number, number | null]] : []), ...cells.filter((c) => c.method === m).map((c) => [c.ratio, f(c)] as [number, number | null])].filter(
        (pt): pt is [number, number] => pt[1] !== null && Number.isFinite(pt[1]),
      ),
    }));
  const charts = state.settings.evalTexts.map((f, i) => lineChart(`cmp-ppl-${i}`, `Perplexity on ${path.basename(f)}`, 'pruning ratio', 'perplexity (log)', byMethod((c) => c.ppl[i]), { log: true }));
  if (state.settings.tasks.length) charts.push(lineChart('cmp-acc', 'Average zero-shot accuracy', 'pruning ratio', 'accuracy', byMethod((c) => c.averageAccuracy)));
  charts.push(lineChart('cmp-speed', 'Forward speed-up over the original', 'pruning ratio', 'speed-up ×', byMethod((c) => c.speedup)));
  return `<div class="grid">${charts.join('')}</div>`;
}

function beforeAfterCharts(input: ReportInput): string {
  const charts: string[] = [];
  const labels = input.rows.map((r) => r.label);
  if (input.evalTexts.length)
    charts.push(groupedBars('ba-ppl', 'Perplexity before and after', input.evalTexts.map((f) => path.basename(f)), input.rows.map((r) => ({ name: r.label, values: r.ppl })), 'perplexity (log)', { log: true }));
  const tasks = [...new Set(input.rows.flatMap((r) => r.tasks.map((t) => t.task)))];
  if (tasks.length)
    charts.push(groupedBars('ba-acc', 'Zero-shot accuracy before and after', tasks, input.rows.map((r) => ({ name: r.label, values: tasks.map((n) => { const t = r.tasks.find((x) => x.task === n); return t ? taskAcc(t) : NaN; }) })), 'accuracy'));
  charts.push(groupedBars('ba-speed', 'Forward speed-up', ['speed-up'], input.rows.map((r) => ({ name: r.label, values: [r.speedup] })), 'tokens/s ÷ original', { width: 300 }));
  void labels;
  return `<div class="grid">${charts.join('')}</div>`;
}

/** One plan's refinement: every candidate measured, the chosen one marked. */
function refinementTable(label: string, r: PlanRefinement): string {
  const rows = r.candidates
    .map((c) => `<tr${c.name === r.chosen ? ' style="font-weight:600"' : ''}><td>${esc(c.name)}${c.name === r.chosen ? ' (chosen)' : ''}</td><td class="num">${(c.ratio * 100).toFixed(2)} %</td><td class="num">${c.kl.toFixed(4)}</td><td class="num">${c.nll.toFixed(4)}</td></tr>`)
    .join('');
  return `<table><caption>${esc(label)}: by ${r.criterion === 'kl' ? 'KL' : 'NLL'}; unpruned NLL ${r.intactNll.toFixed(4)}</caption><thead><tr><th>candidate</th><th>removed</th><th>KL</th><th>NLL</th></tr></thead><tbody>${rows}</tbody></table>`;
}

export function renderReport(input: ReportInput): string {
  const a = input.analysis;
  const blocks = a.blocks.map((b) => `${b.index}`);
  const te = groupedBars('te', 'Output-targeted TE per block (nats; the paper\'s first reading)', blocks, [
    { name: 'TE block', values: a.blocks.map((b) => b.te) },
    { name: 'TE attention', values: a.blocks.map((b) => b.teAttn) },
    { name: 'TE MLP', values: a.blocks.map((b) => b.teMlp) },
  ], 'nats');
  const stream = a.blocks.every((b) => b.teStream !== undefined)
    ? groupedBars('te-stream', 'Stream-targeted TE per block (nats)', blocks, [
        { name: 'block', values: a.blocks.map((b) => b.teStream!) },
        { name: 'attention', values: a.blocks.map((b) => b.teStreamAttn!) },
        { name: 'MLP', values: a.blocks.map((b) => b.teStreamMlp!) },
      ], 'nats')
    : '';
  const m = a.sensitivity;
  const damageBars = (id: string, title: string, f: PartFigures) =>
    groupedBars(id, title, blocks, [
      { name: 'block', values: f.block.map((x) => x ?? NaN) },
      { name: 'attention', values: f.attn.map((x) => x ?? NaN) },
      { name: 'MLP', values: f.mlp.map((x) => x ?? NaN) },
    ], 'nats');
  const measured = m
    ? damageBars('sensitivity', 'Measured removal damage: KL of the output distribution (nats)', m.kl) +
      damageBars('sensitivity-loss', 'Measured removal damage: held-out loss increase (nats)', m)
    : '';
  const rho = (x: number | undefined) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(2));
  const agreement = m
    ? `<table><thead><tr><th>estimator</th><th>Spearman ρ, blocks</th><th>ρ, attention and MLP layers</th><th>ρ blocks (loss increase)</th><th>ρ layers (loss increase)</th></tr></thead><tbody>${(['stream-te', 'output-te'] as const)
        .map((e) => `<tr><td>${e}</td><td class="num">${rho(m.agreement[e]?.blocks)}</td><td class="num">${rho(m.agreement[e]?.sublayers)}</td><td class="num">${rho(m.agreementWithLoss?.[e]?.blocks)}</td><td class="num">${rho(m.agreementWithLoss?.[e]?.sublayers)}</td></tr>`)
        .join('')}</tbody></table><p class="note">Agreement of each transfer-entropy estimator with the measured damage of removing each part alone (KL of the next-token distribution, which the planner's measured estimator uses, and the loss increase) (${m.windows} × ${m.seqLen} held-out tokens, ${m.compensated ? 'mean-compensated' : 'plain'}). The plans use ${esc(input.plans[0]?.plan.method.estimator ?? 'the measured damage')}.</p>`
    : '<p class="note">No measured sensitivities in this analysis (--no-sensitivity): the planner used the stream-targeted TE.</p>';
  const ratios = input.plans.length
    ? groupedBars('block-ratios', 'Per-block pruning ratio (share of block weights removed)', blocks, [
        ...input.plans.filter((p) => p.plan.method.name === 'entropy').slice(0, 1).map((p) => ({ name: `planned (${p.label})`, values: p.plan.blocks.map((b) => b.plannedRatio ?? NaN) })),
        ...input.plans.map((p) => ({ name: `achieved (${p.label})`, values: blockRatioSeries(p.plan) })),
      ], 'ratio')
    : '';
  const heat = input.plans.map((p, i) => headHeat(p.plan, `heads-${i}`, p.label) + channelHeat(p.plan, `channels-${i}`, p.label)).join('');
  const refinements = input.plans.filter((p) => p.plan.refinement).map((p) => refinementTable(p.label, p.plan.refinement!)).join('');
  const entropyPlan = input.plans.find((p) => p.plan.method.name === 'entropy')?.plan ?? input.plans[0]?.plan;
  const cal = a.calibration;
  const css = `body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:12px}svg.plot{background:#fff;border:1px solid #eee}.grid svg{flex:none}.note{color:#666;font-size:12.5px}
.tick{font-size:10.5px;fill:#555}.axis{font-size:11.5px;fill:#333}.lg{font-size:11px;fill:#333}.ttl{font-size:12.5px;font-weight:600;fill:#222}.grid line,.grid line.grid{stroke:#eee}line.grid{stroke:#eee}code{background:#f4f4f4;padding:0 3px}`;
  const script = `window.addEventListener('load',function(){var ps=document.querySelectorAll('svg.plot'),ok=0;for(var i=0;i<ps.length;i++){var r=ps[i].getBoundingClientRect();var marks=ps[i].querySelectorAll('rect.bar,rect.cell,polyline.line,circle').length;var good=r.width>50&&r.height>50&&marks>0;ps[i].setAttribute('data-rendered',good?'yes':'no');if(good)ok++;}document.body.setAttribute('data-plots',String(ps.length));document.body.setAttribute('data-plots-rendered',String(ok));});`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(input.title)}</title><style>${css}</style></head><body>
<h1>${esc(input.title)}</h1>
<p>Model <code>${esc(input.modelPath)}</code> (${a.model.layers.length} blocks, hidden ${a.model.dim}, ${a.model.arch}). Calibration: ${cal.samples} × ${cal.seqLen} tokens of <code>${esc(path.basename(cal.file))}</code>, seed ${cal.seed}${cal.projected ? `, hidden states projected to ${cal.jointDim} dimensions` : ''}. Made by entroprune ${esc(VERSION)} on ${new Date().toISOString().slice(0, 10)}.</p>
${(input.notes ?? []).map((n) => `<p class="note">${esc(n)}</p>`).join('')}
<h2>Results</h2>
${resultsTable(input)}
${input.compare ? compareCharts(input.compare) : beforeAfterCharts(input)}
<h2>How much to prune: measured sensitivities, transfer entropy and per-block ratios</h2>
<p class="note">Measured damage: the held-out loss increase when a block, attention layer or MLP layer is removed alone. Stream-targeted TE = I(h<sub>l−1</sub> + x + ε; x | h<sub>l−1</sub>); output-targeted TE<sub>l</sub> = I(y; Δ<sub>l</sub> | h<sub>l−1</sub>). See docs/METHOD.md.</p>
${agreement}
<div class="grid">${measured}${stream}${te}${ratios}</div>
${refinements ? `<h2>The measured refinement of the plan</h2><p class="note">Each candidate plan measured in memory on the sensitivity windows: KL from the unpruned model (nats per position) and next-token NLL; the lowest by the criterion is the one applied (docs/METHOD.md §4c).</p>${refinements}` : ''}
<h2>What to prune: kept heads and channels</h2>
<div class="grid">${heat}</div>
<h2>Unit entropies and their K-means groups${entropyPlan ? ` (${esc(input.plans.find((p) => p.plan === entropyPlan)!.label)})` : ''}</h2>
${entropyGroups(a, entropyPlan, 'ent')}
<script>${script}</script>
</body></html>
`;
}

export function writeReport(file: string, input: ReportInput): void {
  writeFileAtomic(file, renderReport(input));
}

export function writeCompareReport(file: string, state: CompareState, outDir: string, analysis: Analysis, plans: { label: string; plan: PruningPlan }[]): void {
  const rows = orderedCells(state).map((c) => ({
    label: c.method === 'original' ? 'original' : `${c.method} ${(c.ratio * 100).toFixed(0)} %`,
    params: c.params,
    ratio: c.ratio,
    ppl: c.ppl,
    tasks: c.tasks,
    averageAccuracy: c.averageAccuracy,
    speedup: c.speedup,
    generation: c.generation,
  }));
  writeReport(file, {
    title: `entroprune comparison — ${path.basename(state.settings.model)}`,
    modelPath: state.settings.model,
    analysis,
    plans,
    evalTexts: state.settings.evalTexts,
    rows,
    compare: state,
    notes: [`Working directory ${outDir}; methods ${state.settings.methods.join(', ')}; ratios ${state.settings.ratios.join(', ')}${state.settings.limit ? `; tasks on seeded subsets of ${state.settings.limit} documents` : ''}.`],
  });
}
