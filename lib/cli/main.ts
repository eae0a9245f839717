// The `entroprune` command line. Each command is a thin shell over the Node API: parse and check options,
// run the stage with a progress bar (terminal only), print a table or one JSON object (--json).
// Exit codes: 0 success, 1 bad input or failed run (message on stderr), 2 usage error, 130 interrupted.
import * as fs from 'node:fs';

import { Command, InvalidArgumentError, Option } from 'commander';

import { announceDevice, cudaDevicesOption, deviceOpt, floatOption, interruptSignal, intOption, STREAM_HELP } from './options';
import { registerCompareCommand } from './compare-command';
import { registerBenchCommand, registerEvalCommands } from './eval-commands';
import { registerPruneCommands } from './prune-commands';
import { addPlannerOptions, plannerOptions, ratioOption, type PlannerCliOptions } from './plan-options';
import { registerSynthCommand } from './synth-command';

import { perplexity } from '../evaluate/perplexity';
import { analyzeToFile, type AnalyzeStages } from '../measure/analyze';
import { readAnalysis } from '../measure/analysis';
import { UNIT_RANKINGS, type UnitRanking } from '../measure/unit-order';
import { plan as makePlan, PlanOptions } from '../plan/planner';
import { PlanMethod, PruningPlan, writePlan } from '../plan/plan';
import { loadModel } from '../load/model';
import type { CovarianceProducts } from '../native';
import { tokenizerFor } from '../load/tokenizer';
import { cudaInfo, setThreads, type DeviceRequest } from '../runtime';
import { EntropruneError } from '../util/errors';
import { ProgressBar } from '../util/progress';
import { VERSION } from '../version';
import type { Analysis } from '../measure/analysis';
import { registerSensitivityCommand } from './sensitivity-command';
import { checkInput } from '../util/input-file';
import { printWarning, warnBeyondContext } from './options';
import { anyCheckFailed, resetCheckStatus } from './exit-status';

function readText(file: string): string {
  checkInput(file, 'text file');
  // Pre-tokenized ids are calibration input; as text they would be scored as binary garbage.
  if (/\.(tokens|i32)$/i.test(file)) throw new EntropruneError('EP_INVALID_ARGUMENT', `${file}: eval ppl reads text; this looks like pre-tokenized int32 ids (.tokens/.i32)`, file);
  const text = fs.readFileSync(file, 'utf8');
  if (text.trim().length === 0) throw new EntropruneError('EP_INVALID_ARGUMENT', `${file}: the text file is empty`, file);
  return text;
}

interface PplOptions {
  text: string;
  tokenizer?: string;
  seqLen?: number;
  maxTokens?: number;
  batch?: number;
  threads?: number;
  device: DeviceRequest;
  pplNormalization: 'exact' | 'wanda';
  json?: boolean;
}

async function evalPpl(modelPath: string, o: PplOptions): Promise<void> {
  const threads = setThreads(o.threads);
  const device = announceDevice(o.device, o.json, 'evaluation');
  const text = readText(o.text);
  const model = await loadModel(modelPath);
  warnBeyondContext(model, o.seqLen, o.json);
  const tokenizer = tokenizerFor(model, o.tokenizer);
  const bar = new ProgressBar('perplexity', { quiet: o.json });
  const r = await perplexity(model, tokenizer, text, {
    seqLen: o.seqLen,
    maxTokens: o.maxTokens,
    batchSeqs: o.batch,
    normalization: o.pplNormalization,
    ...cudaDevicesOption(device),
    onProgress: (p) => bar.update(p),
    signal: interruptSignal(),
  });
  bar.finish();
  const result = { model: model.path, text: o.text, tokenizer: tokenizer.source, device: device.device, threads, ...r };
  if (o.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    process.stdout.write(
      `perplexity ${r.ppl.toFixed(4)}  (mean NLL ${r.meanNll.toFixed(5)}, ${r.windows} windows × ${r.seqLen} tokens, ` +
        `${r.predicted} predicted of ${r.tokens} tokens, ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.seconds.toFixed(2)} s, ${threads} threads)\n`,
    );
  }
}

interface AnalyzeCliOptions {
  sensitivity: boolean;
  sensitivityWindows?: number;
  halfCuts?: boolean;
  refitDamage: boolean;
  refitRankings?: UnitRanking[];
  calib: string;
  tokenizer?: string;
  samples?: number;
  seqLen?: number;
  seed: number;
  batch?: number;
  maxDim: number;
  projDim: number;
  ridge: number;
  products: CovarianceProducts;
  stream?: boolean;
  threads?: number;
  device: DeviceRequest;
  output: string;
  json?: boolean;
}

async function analyzeCmd(modelPath: string, o: AnalyzeCliOptions): Promise<void> {
  const threads = setThreads(o.threads);
  const device = announceDevice(o.device, o.json, 'calibration');
  const model = await loadModel(modelPath, { streamLayers: o.stream });
  warnBeyondContext(model, o.seqLen, o.json);
  const needsTokenizer = !/\.(json|tokens|i32)$/i.test(o.calib) || /\.jsonl$/i.test(o.calib);
  const tokenizer = needsTokenizer ? tokenizerFor(model, o.tokenizer) : undefined;
  const bar = new ProgressBar('analyze', { quiet: o.json });
  const r = await analyzeToFile(model, o.output, {
    calib: o.calib,
    tokenizer,
    samples: o.samples,
    seqLen: o.seqLen,
    seed: o.seed,
    batchSeqs: o.batch,
    maxDim: o.maxDim,
    projDim: o.projDim,
    ridge: o.ridge,
    products: o.products,
    stream: o.stream,
    sensitivity: o.sensitivity && { windows: o.sensitivityWindows, halfCuts: o.halfCuts },
    onSensitivityProgress: (p) => bar.update(p),
    refitDamage: o.refitDamage && { rankings: o.refitRankings },
    onRefitDamageProgress: (p) => bar.update(p),
    ...cudaDevicesOption(device),
    onProgress: (p) => bar.update(p),
    signal: interruptSignal(),
  });
  bar.finish();
  const a = r.analysis;
  if (o.json) {
    process.stdout.write(JSON.stringify({ output: o.output, seconds: r.seconds, stages: r.stages, threads, device: r.device, peakDeviceBytes: r.peakDeviceBytes, tokens: a.calibration.tokens, blocks: a.blocks.map((b) => ({ index: b.index, te: b.te, teAttn: b.teAttn, teMlp: b.teMlp, cosine: b.cosine })) }) + '\n');
    return;
  }
  const c = a.calibration;
  const lines = [
    `analysis written to ${o.output} (+ ${a.means.file}) in ${r.seconds.toFixed(2)} s on ${r.device}${r.peakDeviceBytes ? ` (peak GPU memory ${(r.peakDeviceBytes / 2 ** 30).toFixed(2)} GiB)` : ''}`,
    `calibration: ${c.samples} × ${c.seqLen} tokens from ${c.file} (seed ${c.seed})${c.projected ? `, hidden states projected to ${c.jointDim} dims` : ''}`,
    stagesLine(r.stages),
    'block        TE    TE_attn     TE_mlp   cos(h_in,h_out)   head entropy (min..max)   channel entropy (min..max)',
    ...a.blocks.map((b) => {
      const range = (xs: number[] | undefined) => (xs && xs.length ? `${Math.min(...xs).toFixed(3)}..${Math.max(...xs).toFixed(3)}` : '-');
      return `${String(b.index).padStart(5)}  ${b.te.toFixed(4).padStart(8)}  ${b.teAttn.toFixed(4).padStart(9)}  ${b.teMlp.toFixed(4).padStart(9)}  ${b.cosine.toFixed(4).padStart(16)}   ${range(b.attention?.headEntropy).padStart(22)}   ${range(b.mlp?.channelEntropy).padStart(25)}`;
    }),
    ...sensitivityLines(a),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

/** Where analyze's time went. */
function stagesLine(s: AnalyzeStages): string {
  const f = (x: number) => `${x.toFixed(2)} s`;
  const passes = s.forward !== undefined ? ` (forward ${f(s.forward)} + with capture ${f(s.capture ?? 0)})` : '';
  return `time: tokenize ${f(s.tokenize)}, calibrate ${f(s.calibrate)}${passes}, estimators ${f(s.estimators)}, refit damage ${f(s.refitDamage)}, sensitivity ${f(s.sensitivity)}`;
}

/** The measured sensitivities beside the stream-targeted TE, and each estimator's rank agreement. */
export function sensitivityLines(a: Analysis): string[] {
  const m = a.sensitivity;
  if (!m) return ['sensitivity: not measured (--no-sensitivity); the planner uses the stream-targeted TE'];
  const f = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(4));
  const ag = (e: 'stream-te' | 'output-te') =>
    `${e} ρ blocks ${f(m.agreement[e]?.blocks)}, sublayers ${f(m.agreement[e]?.sublayers)} (against the loss increase: ${f(m.agreementWithLoss?.[e]?.blocks)}, ${f(m.agreementWithLoss?.[e]?.sublayers)})`;
  return [
    `measured removal damage on ${m.windows} × ${m.seqLen} held-out tokens (${m.compensated ? 'mean-compensated' : 'plain'}): KL of the output distribution and loss increase, nats`,
    'block   KL block     attn      MLP  | loss block     attn      MLP  | stream TE block     attn      MLP',
    ...a.blocks.map(
      (b, l) =>
        `${String(l).padStart(5)}  ${f(m.kl.block[l]).padStart(9)} ${f(m.kl.attn[l]).padStart(8)} ${f(m.kl.mlp[l]).padStart(8)}  | ${f(m.block[l]).padStart(10)} ${f(m.attn[l]).padStart(8)} ${f(m.mlp[l]).padStart(8)}  | ${f(b.teStream).padStart(15)} ${f(b.teStreamAttn).padStart(8)} ${f(b.teStreamMlp).padStart(8)}`,
    ),
    `agreement with the measured KL (Spearman): ${ag('stream-te')}; ${ag('output-te')}`,
  ];
}

interface PlanCliOptions extends PlannerCliOptions {
  ratio: number;
  output?: string;
  dryRun?: boolean;
  json?: boolean;
}

export function planTable(p: PruningPlan): string {
  const rows = p.blocks.map((b) => {
    const s = p.model.layers[b.index];
    const heads = b.attention.removed ? 'removed' : `${b.attention.keptHeads.length}/${s.nHead} (kv ${b.attention.keptKvHeads.length}/${s.nKvHead})`;
    const ch = b.mlp.removed ? 'removed' : `${b.mlp.keptChannels.length}/${s.ffn}`;
    return `${String(b.index).padStart(5)}  ${(b.te ?? 0).toFixed(4).padStart(9)}  ${((b.plannedRatio ?? 0) * 100).toFixed(1).padStart(7)} %  ${heads.padStart(18)}  ${ch.padStart(12)}${b.removed ? '  (block removed)' : ''}`;
  });
  return [
    `method ${p.method.name} (importance ${p.method.importance}${p.method.cutDamage ? `, ${p.method.cutDamage} cut damage` : ''}, ${p.method.search}, ratios ${p.method.ratios}, ${p.method.granularity}, compensation ${p.method.compensation ? 'on' : 'off'})`,
    `target ${(p.target.ratio * 100).toFixed(1)} % of block linear weights; achieved ${(p.achieved.ratio * 100).toFixed(2)} % ` +
      `(${p.achieved.keptParams.toLocaleString('en-US')} of ${p.achieved.originalParams.toLocaleString('en-US')} kept); whole model ${(p.achieved.wholeModelRatio * 100).toFixed(2)} %`,
    'block         TE  planned     heads kept (kv)  channels kept',
    ...rows,
    ...p.notes.map((n) => `note: ${n}`),
  ].join('\n');
}

async function planCmd(analysisFile: string, o: PlanCliOptions): Promise<void> {
  const { analysis } = readAnalysis(analysisFile);
  const options: PlanOptions = { ...plannerOptions(o), ratio: o.ratio, analysisFile };
  if (o.importance === 'weight') {
    const model = await loadModel(analysis.model.path);
    options.weights = model.handle.unitWeightMagnitudes();
  }
  const p = makePlan(analysis, options);
  if (!o.dryRun) writePlan(o.output ?? 'plan.json', p);
  if (o.json) process.stdout.write(JSON.stringify(o.dryRun ? p : { output: o.output ?? 'plan.json', target: p.target, achieved: p.achieved, notes: p.notes }) + '\n');
  else process.stdout.write(planTable(p) + (o.dryRun ? '' : `\nplan written to ${o.output ?? 'plan.json'}`) + '\n');
  const off = Math.abs(p.achieved.ratio - p.target.ratio) > p.method.tolerance;
  if (off) printWarning(p.notes[p.notes.length - 1], o.json);
}

async function info(modelPath: string, o: { json?: boolean }): Promise<void> {
  const model = await loadModel(modelPath);
  const i = model.info;
  if (o.json) {
    process.stdout.write(JSON.stringify(i) + '\n');
    return;
  }
  const lines = [
    `${i.path}  (${i.format}, arch ${i.arch})`,
    `hidden ${i.dim}, vocab ${i.vocab}, head size ${i.headDim}, context ${i.context || 'unknown'}, RMSNorm eps ${Number(i.normEps.toPrecision(6))}`,
    `RoPE theta ${Number(i.ropeTheta.toPrecision(7))}, layout ${i.ropeLayout}, scaling ${i.ropeScaling}; output head ${i.tiedOutput ? 'tied to the embedding' : 'separate'}`,
    `parameters ${i.parameterCount.toLocaleString('en-US')} (block linear weights ${i.blockLinearParameterCount.toLocaleString('en-US')})`,
    'layer  q-heads  kv-heads  mlp-width  biases',
    ...i.layers.map(
      (l, n) =>
        `${String(n).padStart(5)}  ${String(l.nHead).padStart(7)}  ${String(l.nKvHead).padStart(8)}  ${String(l.ffn).padStart(9)}  ` +
        ([l.attnOutBias ? 'attn_out' : '', l.ffnDownBias ? 'ffn_down' : ''].filter(Boolean).join(',') || '-'),
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('entroprune')
    .description('Structured pruning of LLaMA-family models, guided by transfer entropy (C++/CUDA core).')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride(); // inherited by the subcommands below: main() maps commander's exits to our codes

  program
    .command('info')
    .description('print a model\'s configuration (HF directory, .gguf or llama2.c .bin)')
    .argument('<model>', 'model path')
    .option('--json', 'print one JSON object')
    .action(info);

  program
    .command('device')
    .description('show whether a CUDA device is usable')
    .option('--json', 'print one JSON object')
    .action((o: { json?: boolean }) => {
      const p = cudaInfo();
      process.stdout.write(o.json ? JSON.stringify(p) + '\n' : `${p.message}\n`);
    });

  const evalCmd = program.command('eval').description('evaluate a model');
  evalCmd
    .command('ppl')
    .description('perplexity over non-overlapping windows of a text (BOS once at the start)')
    .argument('<model>', 'HF directory, .gguf file or llama2.c .bin')
    .requiredOption('--text <file>', 'text file to score')
    .option('--tokenizer <file>', 'tokenizer.json or llama2.c tok*.bin (default: the model\'s own)')
    .option('--seq-len <n>', 'window length (default min(2048, context))', intOption('seq-len', 2))
    .option('--max-tokens <n>', 'use only the first N tokens of the text', intOption('max-tokens', 2))
    .option('--batch <n>', 'windows per forward call', intOption('batch', 1))
    .option('--threads <n>', 'CPU threads (default: all cores)', intOption('threads', 1))
    .addOption(deviceOpt())
    .addOption(new Option('--ppl-normalization <mode>', 'exact: mean over predicted tokens; wanda: sum / (windows·seqLen)').choices(['exact', 'wanda']).default('exact'))
    .option('--json', 'print one JSON object (ppl, tokens, seqLen, ...)')
    .action(evalPpl);
  registerEvalCommands(evalCmd);

  program
    .command('analyze')
    .description('measure transfer entropy per block and entropy per head/channel on calibration text')
    .argument('<model>', 'HF directory, .gguf file or llama2.c .bin')
    .requiredOption('--calib <file>', 'calibration text, JSONL (text field) or pre-tokenized ids (.json, .tokens)')
    .option('--tokenizer <file>', 'tokenizer.json or llama2.c tok*.bin (default: the model\'s own)')
    .option('--samples <n>', 'calibration windows (default 128)', intOption('samples', 1))
    .option('--seq-len <n>', 'window length (default min(2048, context))', intOption('seq-len', 2))
    .option('--seed <n>', 'sampling and projection seed', intOption('seed', 0), 0)
    .option('--batch <n>', 'windows per forward call', intOption('batch', 1))
    .option('--max-dim <n>', 'project hidden states when the hidden size exceeds this', intOption('max-dim', 1), 1024)
    .option('--proj-dim <n>', 'projection dimension', intOption('proj-dim', 1), 512)
    .option('--ridge <x>', 'relative ridge for log-determinants', floatOption('ridge', 0), 1e-6)
    .addOption(
      new Option('--products <precision>', 'covariance cross-products: float32 (blocked into float64 sums, ~2x faster), float64, or auto (float64 up to 1024 wide)')
        .choices(['auto', 'float32', 'float64'])
        .default('auto'),
    )
    .option('--stream', STREAM_HELP)
    .option('--no-sensitivity', 'skip measuring each block\'s / layer\'s removal damage (the planner then uses the stream-targeted TE)')
    .option('--sensitivity-windows <n>', 'windows for the measured sensitivities (default 16)', intOption('sensitivity-windows', 1))
    .option('--refit-rankings <list>', 'unit rankings to record the refit-aware damage for (default contribution,entropy; add activation,weight for the ablations)', (v: string) => {
      const list = v.split(',').map((x) => x.trim()).filter(Boolean) as UnitRanking[];
      const bad = list.find((x) => !UNIT_RANKINGS.includes(x));
      if (bad || list.length === 0) throw new InvalidArgumentError(`rankings must be among ${UNIT_RANKINGS.join(', ')}`);
      return list;
    })
    .option('--no-refit-damage', 'skip recording what least-squares compensation leaves of each partial cut (the planner then shares damage by variance)')
    .option('--half-cuts', 'also measure each sublayer with the lower-ranked half of its units cut (for plan --curvature measured)')
    .option('--threads <n>', 'CPU threads (default: all cores)', intOption('threads', 1))
    .addOption(deviceOpt())
    .option('-o, --output <file>', 'analysis JSON to write', 'analysis.json')
    .option('--json', 'print a JSON summary instead of the table')
    .action(analyzeCmd);

  addPlannerOptions(
    program
      .command('plan')
      .description('decide what to prune and how much, from an analysis (docs/METHOD.md section 4)')
      .argument('<analysis>', 'analysis.json written by `entroprune analyze`')
      .requiredOption('--ratio <r>', 'target share of block linear weights to remove, in (0, 1)', ratioOption),
  )
    .option('-o, --output <file>', 'plan JSON to write', 'plan.json')
    .option('--dry-run', 'print the table, write nothing')
    .option('--json', 'print JSON')
    .action(planCmd);

  registerSensitivityCommand(program);
  registerPruneCommands(program);
  registerCompareCommand(program);
  registerBenchCommand(program);
  registerSynthCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  // Handle Ctrl-C / SIGTERM from the first moment (loading a model or tokenizing a text takes time too):
  // the running job is cancelled, temporary outputs are removed, the exit code is 130.
  interruptSignal();
  const program = buildProgram();
  resetCheckStatus();
  try {
    await program.parseAsync(argv);
    return anyCheckFailed() ? 1 : 0;
  } catch (e) {
    const err = e as { code?: string; exitCode?: number; message?: string };
    if (typeof err.code === 'string' && err.code.startsWith('commander.')) {
      // A mistyped required option is reported as missing: name the near miss too.
      if (err.code === 'commander.missingMandatoryOptionValue') for (const hint of nearMisses(program, argv)) process.stderr.write(`${hint}\n`);
      // help and version exit 0; usage errors were already printed by commander
      return err.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof EntropruneError) {
      process.stderr.write(`entroprune: ${e.message}\n`);
      return e.code === 'EP_CANCELLED' ? 130 : 1;
    }
    process.stderr.write(`entroprune: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}

/** Levenshtein distance (small strings: option names). Written here: commander suggests near misses with its
 * own helper, but does not export it, and it never runs when a mistyped option is a required one. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

/** "(--ratoi is not an option of prune: did you mean --ratio?)" for each unknown long option near a known one. */
export function nearMisses(program: Command, argv: string[]): string[] {
  const args = argv.slice(2);
  const cmd = program.commands.find((c) => args.includes(c.name())) ?? program;
  const known = cmd.options.map((o) => o.long).filter((l): l is string => !!l);
  const out: string[] = [];
  for (const a of args) {
    if (!a.startsWith('--')) continue;
    const name = a.split('=')[0];
    if (known.includes(name) || known.includes(name.replace(/^--no-/, '--'))) continue;
    const best = known.map((k) => [k, editDistance(name, k)] as const).sort((x, y) => x[1] - y[1])[0];
    if (best && best[1] <= Math.max(2, Math.floor(name.length / 3))) out.push(`(${name} is not an option of ${cmd.name()}: did you mean ${best[0]}?)`);
  }
  return out;
}
