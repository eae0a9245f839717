// CLI: `eval tasks` (zero-shot accuracy, lm-eval style) and `bench` (speed and memory, side by side).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Command, Option } from 'commander';

import { bench, BenchEngine, benchTable } from '../evaluate/bench';
import { averageAccuracy, evaluateTasks, TaskResult } from '../evaluate/tasks/zero-shot';
import { PAPER_TASKS, TASKS } from '../evaluate/tasks/task-files';
import { loadModel } from '../load/model';
import { tokenizerFor } from '../load/tokenizer';
import { setThreads, type DeviceRequest } from '../runtime';
import { EntropruneError } from '../util/errors';
import { progressByLabel, ProgressBar } from '../util/progress';
import { announceDevice, cudaDevicesOption, deviceOpt, interruptSignal, intOption } from './options';
import { checkFailed } from './exit-status';

/** --tasks-dir, else $ENTROPRUNE_TASKS_DIR, else the tasks/ folder of the shared data. */
export function defaultTasksDir(explicit?: string): string {
  if (explicit) return explicit;
  if (process.env.ENTROPRUNE_TASKS_DIR) return process.env.ENTROPRUNE_TASKS_DIR;
  const data = process.env.ENTROPRUNE_TEST_DATA ?? path.join('..', 'shared', 'data');
  const dir = path.join(data, 'tasks');
  if (fs.existsSync(dir)) return dir;
  throw new EntropruneError(
    'EP_IO',
    `no task folder found at ${dir}: pass --tasks-dir <folder with piqa.jsonl, arc_easy.jsonl, ...> or set ENTROPRUNE_TASKS_DIR (the task data is not in the npm package: the README's "Zero-shot task files" gives the format and where to get them)`,
    dir,
  );
}

export function parseTaskList(value: string): string[] {
  const expanded = value.split(',').map((s) => s.trim()).filter(Boolean).flatMap((n) => (n === 'paper' ? PAPER_TASKS : n === 'all' ? Object.keys(TASKS) : [n]));
  const names = [...new Set(expanded)];
  for (const n of names) if (!TASKS[n]) throw new EntropruneError('EP_INVALID_ARGUMENT', `unknown task "${n}" (known: ${Object.keys(TASKS).join(', ')}, or "paper" / "all")`);
  return names;
}

const pct = (x: number) => (x * 100).toFixed(2);

export function taskTable(results: TaskResult[]): string {
  const rows = results.map((r) => {
    const norm = r.accNorm ? `${pct(r.accNorm.value).padStart(6)} ± ${pct(r.accNorm.stderr).padStart(5)}` : '       -       ';
    const extra = r.ppl !== undefined ? `  ppl ${r.ppl.toFixed(2)}` : '';
    return `${r.task.padEnd(14)} ${String(r.docs).padStart(6)}  ${pct(r.acc.value).padStart(6)} ± ${pct(r.acc.stderr).padStart(5)}  ${norm}  ${r.seconds.toFixed(1).padStart(7)} s${extra}`;
  });
  return [
    'task             docs     acc (%)          acc_norm (%)       time',
    ...rows,
    `average (acc_norm where reported, else acc): ${pct(averageAccuracy(results))} %`,
  ].join('\n');
}

interface TasksCli {
  tasks: string;
  tasksDir?: string;
  limit?: number;
  seed: number;
  tokenizer?: string;
  batchTokens?: number;
  threads?: number;
  device: DeviceRequest;
  json?: boolean;
}

interface BenchCli {
  device: DeviceRequest;
  against?: string;
  prompt: number;
  generate: number;
  threads?: number;
  rounds: number;
  engine: 'all' | BenchEngine;
  json?: boolean;
}

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('prefill and decode speed and peak memory, in entroprune\'s engine and llama.cpp, side by side')
    .argument('<model>', 'model to measure (e.g. the pruned .gguf)')
    .option('--against <model>', 'baseline measured in the same run (e.g. the original)')
    .option('--prompt <n>', 'prompt tokens (prefill)', intOption('prompt', 1), 256)
    .option('--generate <n>', 'tokens generated greedily (decode)', intOption('generate', 1), 64)
    .option('--threads <n>', 'CPU threads (default: all cores)', intOption('threads', 1))
    .option('--rounds <n>', 'alternating rounds; medians are reported', intOption('rounds', 1), 3)
    .addOption(new Option('--engine <name>', 'engines to run').choices(['all', 'entroprune', 'llama.cpp']).default('all'))
    .addOption(deviceOpt())
    .option('--json', 'print JSON')
    .action(async (modelPath: string, o: BenchCli) => {
      announceDevice(o.device, o.json);
      const threads = o.threads ?? os.availableParallelism();
      const options = { prompt: o.prompt, generate: o.generate, threads, rounds: o.rounds, engines: o.engine === 'all' ? undefined : [o.engine], signal: interruptSignal() };
      const bar = new ProgressBar('bench', { quiet: o.json });
      const rows = await bench(modelPath, o.against, { ...options, onProgress: (done, total) => bar.update({ done, total }) });
      bar.finish();
      if (o.json) process.stdout.write(JSON.stringify({ ...options, signal: undefined, rows }) + '\n');
      else process.stdout.write(benchTable(rows, options) + '\n');
      if (rows.every((r) => r.status !== 'ok')) checkFailed();
    });
}

export function registerEvalCommands(evalCmd: Command): void {
  evalCmd
    .command('tasks')
    .description('zero-shot multiple-choice accuracy, scored as lm-eval-harness does (acc, acc_norm)')
    .argument('<model>', 'HF directory, .gguf file or llama2.c .bin')
    .option('--tasks <list>', `comma-separated: ${Object.keys(TASKS).join(', ')}; "paper" = the paper's five; "all"`, 'paper')
    .option('--tasks-dir <dir>', 'folder with the task files (default: $ENTROPRUNE_TASKS_DIR or ../shared/data/tasks)')
    .option('--limit <n>', 'a seeded random subset of N documents per task', intOption('limit', 1))
    .option('--seed <n>', 'subset seed', intOption('seed', 0), 0)
    .option('--tokenizer <file>', 'tokenizer override')
    .option('--batch-tokens <n>', 'padded tokens per forward call (default 8192)', intOption('batch-tokens', 1))
    .option('--threads <n>', 'CPU threads (default: all cores)', intOption('threads', 1))
    .addOption(deviceOpt())
    .option('--json', 'print one JSON object')
    .action(async (modelPath: string, o: TasksCli) => {
      const threads = setThreads(o.threads);
      const device = announceDevice(o.device, o.json, 'evaluation');
      const names = parseTaskList(o.tasks);
      const tasksDir = defaultTasksDir(o.tasksDir);
      const model = await loadModel(modelPath);
      const tokenizer = tokenizerFor(model, o.tokenizer);
      const results = await evaluateTasks(model, tokenizer, names, {
        tasksDir,
        limit: o.limit,
        seed: o.seed,
        batchTokens: o.batchTokens,
        ...cudaDevicesOption(device),
        signal: interruptSignal(),
        onProgress: progressByLabel({ quiet: o.json, width: 13 }),
      });
      if (o.json) {
        process.stdout.write(JSON.stringify({ model: model.path, tokenizer: tokenizer.source, device: device.device, threads, limit: o.limit ?? null, seed: o.seed, average: averageAccuracy(results), tasks: results }) + '\n');
      } else {
        process.stdout.write(taskTable(results) + '\n');
      }
    });
}
