// CLI: `compare` — prune with several methods and ratios, evaluate each, print the paper-style table.
import * as path from 'node:path';

import { Command, InvalidArgumentError } from 'commander';

import { compare, COMPARE_METHODS, comparePlans, compareTable, type CompareMethod, type CompareSettings } from '../compare/compare';
import { readAnalysis } from '../measure/analysis';
import type { CompensationMode } from '../apply/apply';
import type { PlanMethod } from '../plan/plan';
import { setThreads, type DeviceRequest } from '../runtime';
import { progressByLabel } from '../util/progress';
import { defaultTasksDir, parseTaskList } from './eval-commands';
import { announceDevice, compensationModeOption, cudaDevicesOption, deviceOpt, GENERATION_PROMPTS_HELP, interruptSignal, intOption, printWarning } from './options';
import { writeCompareReport } from '../report/report';
import { DEFAULT_GENERATION_PROMPTS } from '../evaluate/generation';

const METHODS: CompareMethod[] = COMPARE_METHODS;

function ratioList(v: string): number[] {
  const rs = v.split(',').map((x) => Number(x.trim()));
  if (rs.length === 0 || rs.some((r) => !(r > 0 && r < 1))) throw new InvalidArgumentError('ratios must be numbers strictly between 0 and 1, comma-separated');
  return rs;
}

function methodList(v: string): CompareMethod[] {
  const ms = v.split(',').map((x) => x.trim()) as CompareMethod[];
  for (const m of ms) if (!METHODS.includes(m)) throw new InvalidArgumentError(`unknown method "${m}" (known: ${METHODS.join(', ')})`);
  return ms;
}

interface CompareCli {
  calib: string;
  eval: string;
  ratios: number[];
  methods: CompareMethod[];
  samples: number;
  seqLen?: number;
  seed: number;
  evalSeqLen?: number;
  evalMaxTokens?: number;
  tasks: string;
  tasksDir?: string;
  limit?: number;
  generationPrompts?: number;
  out: string;
  keepModels?: boolean;
  compensationMode?: CompensationMode;
  refine: boolean;
  report?: string;
  threads?: number;
  device: DeviceRequest;
  json?: boolean;
}

export function registerCompareCommand(program: Command): void {
  program
    .command('compare')
    .description('prune with several methods and ratios, evaluate each, print the paper\'s table (resumable)')
    .argument('<model>', 'HF directory, .gguf file or llama2.c .bin')
    .requiredOption('--calib <file>', 'calibration text, JSONL or pre-tokenized ids')
    .requiredOption('--eval <files>', 'text file(s) for perplexity, comma-separated (e.g. WikiText-2 test)')
    .option('--ratios <list>', 'pruning ratios', ratioList, [0.3, 0.4, 0.5])
    .option('--methods <list>', `methods: ${METHODS.join(', ')}`, methodList, ['entropy', 'paper', 'uniform', 'block-drop', 'layer-drop'] as CompareMethod[])
    .option('--samples <n>', 'calibration windows', intOption('samples', 1), 128)
    .option('--seq-len <n>', 'calibration window length (default min(2048, context))', intOption('seq-len', 2))
    .option('--seed <n>', 'calibration and task-subset seed', intOption('seed', 0), 0)
    .option('--eval-seq-len <n>', 'perplexity window length (default min(2048, context))', intOption('eval-seq-len', 2))
    .option('--eval-max-tokens <n>', 'score only the first N tokens of each text', intOption('eval-max-tokens', 2))
    .option('--tasks <list>', 'zero-shot tasks ("paper", "all", a list, or "none")', 'paper')
    .option('--tasks-dir <dir>', 'folder with the task files (default: $ENTROPRUNE_TASKS_DIR or ../shared/data/tasks)')
    .option('--limit <n>', 'a seeded random subset of N documents per task', intOption('limit', 1))
    .option('--generation-prompts <n>', GENERATION_PROMPTS_HELP, intOption('generation-prompts', 0))
    .option('-o, --out <dir>', 'working directory: compare.json (resume state), analysis, plans', 'compare-out')
    .addOption(compensationModeOption())
    .option('--no-refine', 'the entropy row plans from the damage model alone, without measuring its candidates (docs/METHOD.md §4c)')
    .option('--keep-models', 'keep every pruned GGUF in <out>/models')
    .option('--report <file>', 'also write a self-contained HTML report')
    .option('--threads <n>', 'CPU threads (default: all cores)', intOption('threads', 1))
    .addOption(deviceOpt())
    .option('--json', 'print the final state as JSON')
    .action(async (modelPath: string, o: CompareCli) => {
      setThreads(o.threads);
      const device = announceDevice(o.device, o.json, 'calibration');
      const tasks = o.tasks === 'none' ? [] : parseTaskList(o.tasks);
      const settings: CompareSettings = {
        model: modelPath,
        calib: o.calib,
        samples: o.samples,
        calibSeqLen: o.seqLen ?? 0,
        seed: o.seed,
        evalTexts: o.eval.split(',').map((f) => f.trim()).filter(Boolean),
        evalSeqLen: o.evalSeqLen ?? 0,
        evalMaxTokens: o.evalMaxTokens,
        tasks,
        tasksDir: tasks.length ? defaultTasksDir(o.tasksDir) : undefined,
        limit: o.limit,
        ratios: o.ratios,
        methods: o.methods,
        speedSeqLen: 0,
        ...(o.compensationMode ? { compensation: o.compensationMode } : {}),
        ...(o.refine === false ? { refine: false } : {}),
        // absent at the default, so that a comparison started before this option existed still resumes
        ...(o.generationPrompts !== undefined && o.generationPrompts !== DEFAULT_GENERATION_PROMPTS ? { generationPrompts: o.generationPrompts } : {}),
      };
      const state = await compare(settings, {
        out: o.out,
        keepModels: o.keepModels,
        ...cudaDevicesOption(device),
        signal: interruptSignal(),
        onWarning: (message) => printWarning(message, o.json),
        onStep: (label) => {
          if (!o.json) process.stderr.write(`== ${label}\n`);
        },
        onProgress: progressByLabel({ quiet: o.json }),
      });
      if (o.report) {
        const outDir = path.resolve(o.out);
        writeCompareReport(o.report, state, outDir, readAnalysis(path.join(outDir, state.analysis)).analysis, comparePlans(state, outDir));
      }
      if (o.json) process.stdout.write(JSON.stringify(state) + '\n');
      else process.stdout.write(compareTable(state) + (o.report ? `\nreport written to ${o.report}` : '') + '\n');
    });
}
