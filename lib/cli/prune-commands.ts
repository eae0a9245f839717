// CLI: apply, prune (analyze + plan + apply + verify) and verify.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command, Option } from 'commander';

import { applyPlan, ApplyResult, compensationMismatch, OutputFormat, type CompensationMode } from '../apply/apply';
import { defaultSpeedSeqLen, evaluateModel, prepareEvalInputs } from '../evaluate/evaluate-model';
import { averageAccuracy } from '../evaluate/tasks/zero-shot';
import { type Model } from '../load/model';
import { writeReport } from '../report/report';
import { EntropruneError } from '../util/errors';
import { type PruningPlan } from '../plan/plan';
import { defaultTasksDir, parseTaskList } from './eval-commands';
import { loadModel } from '../load/model';
import { tokenizerFor } from '../load/tokenizer';
import { readAnalysis } from '../measure/analysis';
import { readPlan } from '../plan/plan';
import { prune, type PruneStep } from '../prune/prune';
import { addPlannerOptions, plannerOptions, ratioOption, type PlannerCliOptions } from './plan-options';
import { setThreads, type DeviceRequest } from '../runtime';
import { progressByLabel, ProgressBar } from '../util/progress';
import { verify, VerifyRow } from '../verify/verify';
import { announceDevice, compensationModeOption, cudaDevicesOption, deviceOpt, floatOption, GENERATION_PROMPTS_HELP, interruptSignal, intOption, printWarning, STREAM_HELP, warnBeyondContext } from './options';
import { checkFailed } from './exit-status';
import { assertOutputSparesInputs } from '../util/file-identity';

function printVerify(rows: VerifyRow[], json?: boolean): boolean {
  if (!json) {
    process.stdout.write('runtime       result   detail\n');
    for (const r of rows) process.stdout.write(`${r.runtime.padEnd(13)} ${r.status.padEnd(8)} ${r.detail}\n`);
  }
  return rows.every((r) => r.status !== 'fail');
}

function describe(r: ApplyResult): string {
  const refit = r.refit
    ? `; least-squares compensation refitted ${r.refit.layers} layers (${r.refit.passes} calibration pass${r.refit.passes === 1 ? '' : 'es'}` +
      (r.refit.cached ? `, ${r.refit.cached} from moments captured earlier in this run` : '') +
      (r.refit.moreDamping ? `, ${r.refit.moreDamping} needing more damping` : '') + (r.refit.fallbacks ? `, ${r.refit.fallbacks} left with the bias only` : '') + ')'
    : '';
  return `wrote ${r.output} (${r.format}, ${r.layers} blocks, ${r.tensors} tensors, ${(r.bytes / 1e6).toFixed(2)} MB) in ${r.seconds.toFixed(2)} s${refit}`;
}

interface ApplyCli {
  device: DeviceRequest;
  output: string;
  format?: OutputFormat;
  dtype: 'f32' | 'f16' | 'bf16';
  analysis?: string;
  compensationMode?: CompensationMode;
  force?: boolean;
  verify: boolean;
  json?: boolean;
}

/** What the measured refinement chose, in one line (empty when the plan was not refined). */
export function refinementLine(p: PruningPlan): string {
  const r = p.refinement;
  if (!r) return '';
  const first = r.candidates[0], chosen = r.candidates.find((c) => c.name === r.chosen)!;
  return (
    `refinement: ${r.candidates.length} plans measured on the sensitivity windows, chosen "${r.chosen}" by ${r.criterion === 'kl' ? 'KL from the unpruned model' : 'NLL'} ` +
    `(KL ${chosen.kl.toFixed(4)} against ${first.kl.toFixed(4)} as planned; NLL ${chosen.nll.toFixed(4)} against ${first.nll.toFixed(4)}, unpruned ${r.intactNll.toFixed(4)})\n`
  );
}

interface PruneCli extends ApplyCli, PlannerCliOptions {
  sensitivity: boolean;
  refine: boolean;
  refineRounds?: number;
  ratio: number;
  calib: string;
  tokenizer?: string;
  samples?: number;
  seqLen?: number;
  stream?: boolean;
  seed: number;
  threads?: number;
  device: DeviceRequest;
  report?: string;
  eval?: string;
  evalSeqLen?: number;
  evalMaxTokens?: number;
  tasks: string;
  tasksDir?: string;
  limit?: number;
  generationPrompts?: number;
}

/** Evaluate the original and the pruned model side by side and write the HTML report. */
async function pruneReport(o: PruneCli, model: Model, p: PruningPlan, analysisFile: string, prunedFile: string, cudaDevices?: number[]): Promise<string> {
  const texts = (o.eval ?? o.calib).split(',').map((f) => f.trim()).filter(Boolean);
  for (const f of texts) if (!fs.existsSync(f)) throw new EntropruneError('EP_IO', `${f}: evaluation text not found`, f);
  const tasks = o.tasks === 'none' ? [] : parseTaskList(o.tasks);
  const tokenizer = tokenizerFor(model, o.tokenizer);
  const pruned = await loadModel(prunedFile);
  const options = {
    inputs: await prepareEvalInputs(model, tokenizer, {
      texts: texts.map((file) => ({ file, text: fs.readFileSync(file, 'utf8') })),
      maxTokens: o.evalMaxTokens,
      tasks,
      tasksDir: tasks.length ? defaultTasksDir(o.tasksDir) : undefined,
      limit: o.limit,
      seed: o.seed,
      generationPrompts: o.generationPrompts,
      signal: interruptSignal(),
    }),
    seqLen: o.evalSeqLen,
    speedSeqLen: defaultSpeedSeqLen(model),
    cudaDevices,
    signal: interruptSignal(),
    onProgress: progressByLabel({ quiet: o.json }),
  };
  const before = await evaluateModel(model, 'original', options);
  const after = await evaluateModel(pruned, 'pruned', options);
  const row = (label: string, params: number, e: typeof before, speedup: number) => ({
    label, params, ppl: e.ppl, tasks: e.tasks, averageAccuracy: e.tasks.length ? averageAccuracy(e.tasks) : null, speedup, generation: e.generation,
  });
  const rows = [
    row('original', model.info.parameterCount, before, 1),
    row(`pruned (${p.method.name} ${(p.target.ratio * 100).toFixed(0)} %)`, Math.round(model.info.parameterCount * (1 - p.achieved.wholeModelRatio)), after, after.tokensPerSecond / before.tokensPerSecond),
  ];
  writeReport(o.report!, {
    title: `entroprune — ${path.basename(model.info.path)} pruned ${(p.achieved.ratio * 100).toFixed(1)} % (${p.method.name})`,
    modelPath: model.info.path,
    analysis: readAnalysis(analysisFile).analysis,
    plans: [{ label: `${p.method.name} ${(p.target.ratio * 100).toFixed(0)} %`, plan: p }],
    evalTexts: texts,
    rows,
    notes: [`Output ${prunedFile}. Plan: ${p.notes.join(' ')}`],
  });
  // The same numbers as a few terminal lines.
  return rows
    .map((r) => {
      const ppl = r.ppl.map((x, i) => `ppl ${path.basename(texts[i])} ${x.toFixed(2)}`).join(', ');
      const acc = r.averageAccuracy === null ? '' : `, avg accuracy ${(r.averageAccuracy * 100).toFixed(2)} % (${r.tasks.map((t) => `${t.task} ${((t.accNorm ?? t.acc).value * 100).toFixed(1)}`).join(', ')})`;
      const gen = r.generation ? `, greedy continuations rep-4 ${r.generation.repeat4.toFixed(3)} distinct-2 ${r.generation.distinct2.toFixed(3)} longest run ${r.generation.longestRun}, ${r.generation.looping}/${r.generation.prompts} looping` : '';
      return `${r.label}: ${ppl}${acc}${gen}, forward speed ${r.speedup.toFixed(2)}×`;
    })
    .join('\n');
}

export function registerPruneCommands(program: Command): void {
  const formatOpt = () => new Option('--format <f>', 'gguf, hf or llama2c (default: from the output name / the input format)').choices(['gguf', 'hf', 'llama2c']);
  const dtypeOpt = () => new Option('--dtype <t>', 'matrix dtype of the output').choices(['f32', 'f16', 'bf16']).default('f32');

  program
    .command('apply')
    .description('slice a model by a plan, compensate what it removes, and write GGUF or a Hugging Face directory')
    .argument('<model>', 'the model the plan was made for')
    .argument('<plan>', 'plan.json')
    .requiredOption('-o, --output <path>', 'output .gguf file or HF directory')
    .addOption(formatOpt())
    .addOption(dtypeOpt())
    .option('--analysis <file>', 'analysis with the calibration means and windows (default: the one the plan names)')
    .addOption(compensationModeOption())
    .option('--force', 'replace an existing output')
    .option('--no-verify', 'skip the runtime check after writing')
    .addOption(deviceOpt())
    .option('--json', 'print JSON')
    .action(async (modelPath: string, planFile: string, o: ApplyCli) => {
      const device = announceDevice(o.device, o.json, 'compensation');
      const p = readPlan(planFile);
      // Before the work, so a user can stop it (applyPlan reports the same in its result's warnings).
      const mismatch = compensationMismatch(p, o.compensationMode ?? 'least-squares');
      if (mismatch) process.stderr.write(`warning: ${planFile}: ${mismatch}\n`);
      const model = await loadModel(modelPath);
      const bar = new ProgressBar('apply', { quiet: o.json });
      const r = await applyPlan(model, p, {
        onProgress: (ev) => bar.update(ev),
        signal: interruptSignal(), // Ctrl-C / SIGTERM: stop between tensors, remove the temporary output
        output: o.output,
        format: o.format,
        dtype: o.dtype,
        force: o.force,
        analysis: o.analysis ? readAnalysis(o.analysis) : undefined,
        compensation: o.compensationMode,
        ...cudaDevicesOption(device),
      });
      bar.finish();
      const rows = o.verify ? await verify(r.output, { against: modelPath }) : [];
      if (o.json) process.stdout.write(JSON.stringify({ ...r, verify: rows }) + '\n');
      else process.stdout.write(describe(r) + '\n');
      if (!printVerify(rows, o.json)) checkFailed();
    });

  addPlannerOptions(
    program
      .command('prune')
      .description('analyze + plan + apply (+ verify) in one run')
      .argument('<model>', 'HF directory, .gguf file or llama2.c .bin')
      .requiredOption('--ratio <r>', 'share of block linear weights to remove, in (0, 1)', ratioOption)
      .requiredOption('--calib <file>', 'calibration text, JSONL or pre-tokenized ids')
      .requiredOption('-o, --output <path>', 'output .gguf file or HF directory (analysis and plan are written beside it)')
      .option('--tokenizer <file>', 'tokenizer override')
      .option('--samples <n>', 'calibration windows (default 128)', intOption('samples', 1))
      .option('--seq-len <n>', 'calibration window length', intOption('seq-len', 2))
      .option('--seed <n>', 'calibration seed', intOption('seed', 0), 0)
      .option('--no-sensitivity', 'skip the measured sensitivities (the planner uses the stream-targeted TE)')
      .option('--no-refine', 'plan from the damage model alone: do not measure the plan and its candidates on the sensitivity windows (docs/METHOD.md §4c)')
      .option('--refine-rounds <n>', 'accepted secant steps of the refinement at most (default 3; 0: measure the plan and the uniform-ratio one only)', intOption('refine-rounds', 0)),
  )
    .addOption(formatOpt())
    .addOption(dtypeOpt())
    .addOption(compensationModeOption())
    .option('--force', 'replace existing outputs')
    .option('--no-verify', 'skip the runtime check after writing')
    .option('--stream', STREAM_HELP)
    .option('--threads <n>', 'CPU threads (default: all cores)', intOption('threads', 1))
    .addOption(deviceOpt())
    .option('--report <file>', 'evaluate before and after, and write a self-contained HTML report')
    .option('--eval <files>', 'text(s) for the report\'s perplexity, comma-separated (default: the calibration text)')
    .option('--eval-seq-len <n>', 'perplexity window length', intOption('eval-seq-len', 2))
    .option('--eval-max-tokens <n>', 'score only the first N tokens of each text', intOption('eval-max-tokens', 2), 65536)
    .option('--tasks <list>', 'zero-shot tasks for the report ("paper", "all", a list, or "none")', 'none')
    .option('--tasks-dir <dir>', 'folder with the task files')
    .option('--limit <n>', 'a seeded random subset of N documents per task', intOption('limit', 1))
    .option('--generation-prompts <n>', GENERATION_PROMPTS_HELP, intOption('generation-prompts', 0))
    .option('--json', 'print JSON')
    .action(async (modelPath: string, o: PruneCli) => {
      setThreads(o.threads);
      const device = announceDevice(o.device, o.json, 'calibration');
      // Checks that need no model work come first (prune() repeats them with the model: these fail in a second).
      assertOutputSparesInputs(o.output, [modelPath, o.calib, o.tokenizer]);
      const model = await loadModel(modelPath, { streamLayers: o.stream });
      warnBeyondContext(model, o.seqLen, o.json);
      if (o.report) warnBeyondContext(model, o.evalSeqLen, o.json, '--eval-seq-len');
      // each bar is made when its step starts, so its clock is that step's
      const bars: Partial<Record<PruneStep, ProgressBar>> = {};
      const r = await prune(model, {
        ratio: o.ratio,
        calib: o.calib,
        output: o.output,
        tokenizer: /\.(json|tokens|i32)$/i.test(o.calib) ? undefined : tokenizerFor(model, o.tokenizer),
        analyze: { samples: o.samples, seqLen: o.seqLen, seed: o.seed, stream: o.stream, sensitivity: o.sensitivity, ...cudaDevicesOption(device) },
        plan: plannerOptions(o),
        refine: o.refine && (o.refineRounds !== undefined ? { rounds: o.refineRounds } : true),
        format: o.format,
        dtype: o.dtype,
        force: o.force,
        compensation: o.compensationMode,
        onProgress: (step, p) => {
          // a step's line ends when the next step starts
          if (!bars[step]) for (const open of Object.values(bars)) open?.finish();
          (bars[step] ??= new ProgressBar(step, { quiet: o.json })).update(p);
        },
        signal: interruptSignal(),
      });
      for (const open of Object.values(bars)) open?.finish();
      const p = r.plan;
      const analysisFile = r.analysisFile!;
      const planFile = r.planFile!;
      const rows = o.verify ? await verify(r.apply.output, { against: modelPath }) : [];
      const summary = o.report ? await pruneReport(o, model, p, analysisFile, r.apply.output, cudaDevicesOption(device).cudaDevices) : '';
      if (o.json) {
        process.stdout.write(JSON.stringify({ analysis: analysisFile, plan: planFile, report: o.report, target: p.target, achieved: p.achieved, ...r.apply, verify: rows }) + '\n');
      } else {
        process.stdout.write(
          `analysis ${analysisFile} (${r.analysis.seconds.toFixed(1)} s); plan ${planFile}: removed ${(p.achieved.ratio * 100).toFixed(2)} % of block weights ` +
            `(whole model ${(p.achieved.wholeModelRatio * 100).toFixed(2)} %)\n${refinementLine(p)}${describe(r.apply)}\n` + (o.report ? `${summary}\nreport written to ${o.report}\n` : ''),
        );
      }
      if (!printVerify(rows, o.json)) checkFailed();
    });

  program
    .command('verify')
    .description('load a pruned model in every available runtime and compare logits')
    .argument('<pruned>', 'pruned model (.gguf or HF directory)')
    .option('--against <original>', 'the original model, for a perplexity comparison')
    .option('--plan <plan>', 'the plan it was made with (checked for consistency)')
    .option('--max-ppl-ratio <x>', '"vs original" fails when the pruned perplexity exceeds this many times the original\'s', floatOption('max-ppl-ratio', 1), 20)
    .addOption(deviceOpt())
    .option('--json', 'print JSON')
    .action(async (pruned: string, o: { against?: string; plan?: string; maxPplRatio: number; device: DeviceRequest; json?: boolean }) => {
      announceDevice(o.device, o.json);
      if (o.plan) {
        const p = readPlan(o.plan);
        const m = await loadModel(pruned);
        const kept = p.blocks.filter((b) => !b.removed).length;
        if (m.info.layers.length !== kept) printWarning(`the plan keeps ${kept} blocks but ${pruned} has ${m.info.layers.length}`);
      }
      const rows = await verify(pruned, { against: o.against, maxPerplexityRatio: o.maxPplRatio });
      if (o.json) process.stdout.write(JSON.stringify(rows) + '\n');
      if (!printVerify(rows, o.json)) checkFailed();
    });
}
