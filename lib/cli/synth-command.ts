// `entroprune synth`: a random-weight model at a real LLaMA shape, for timing and memory runs.
import { Command, Option } from 'commander';

import { SYNTHETIC_PRESETS, writeSyntheticModel, type SyntheticPreset } from '../synthetic';
import { ProgressBar } from '../util/progress';
import { interruptSignal, intOption } from './options';

interface SynthCli {
  output: string;
  format?: 'gguf' | 'hf';
  dtype: 'f32' | 'f16' | 'bf16';
  layers?: number;
  seed: number;
  force?: boolean;
  json?: boolean;
}

export function registerSynthCommand(program: Command): void {
  program
    .command('synth')
    .description('write a random-weight model at a real LLaMA shape (timing and memory runs; quality needs real models)')
    .addArgument(new Command().createArgument('<shape>', 'model shape').choices(SYNTHETIC_PRESETS))
    .requiredOption('-o, --output <path>', 'output .gguf file or Hugging Face directory')
    .addOption(new Option('--format <f>', 'gguf or hf (default: from the output name)').choices(['gguf', 'hf']))
    .addOption(new Option('--dtype <t>', 'matrix dtype').choices(['f32', 'f16', 'bf16']).default('bf16'))
    .option('--layers <n>', 'keep only the first N blocks', intOption('layers', 1))
    .option('--seed <n>', 'weight seed', intOption('seed', 0), 1)
    .option('--force', 'replace an existing output')
    .option('--json', 'print JSON')
    .action(async (shape: SyntheticPreset, o: SynthCli) => {
      const bar = new ProgressBar('synth', { quiet: o.json });
      const r = await writeSyntheticModel(shape, { ...o, onProgress: (p) => bar.update(p), signal: interruptSignal() });
      bar.finish();
      if (o.json) process.stdout.write(JSON.stringify({ shape, ...r }) + '\n');
      else process.stdout.write(`${shape}: wrote ${r.output} (${r.format}, ${(r.bytes / 2 ** 30).toFixed(2)} GiB)\n`);
    });
}
