// CLI: `sensitivity` — what removing each block, attention layer and MLP layer alone does to the model,
// mean-compensated and plain, beside the transfer-entropy estimators and their rank agreement. It is
// `analyze` with the measured sensitivities in front: the analysis it writes plans like any other.
import { Command } from 'commander';

import { loadModel } from '../load/model';
import { tokenizerFor } from '../load/tokenizer';
import { analyzeToFile } from '../measure/analyze';
import type { Analysis } from '../measure/analysis';
import { setThreads } from '../runtime';
import { ProgressBar } from '../util/progress';
import { cudaDevicesOption, deviceOpt, interruptSignal, intOption, announceDevice } from './options';
import type { DeviceRequest } from '../runtime';

interface SensitivityCli {
  calib: string;
  eval?: string;
  tokenizer?: string;
  samples?: number;
  seqLen?: number;
  windows?: number;
  seed: number;
  threads?: number;
  device: DeviceRequest;
  output: string;
  json?: boolean;
}

function table(a: Analysis): string {
  const m = a.sensitivity!;
  const f = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(4));
  const rho = (x: number | undefined) => (x === undefined || x === null || !Number.isFinite(x) ? '-' : x.toFixed(2));
  const lines = [
    `removal damage on ${m.windows} × ${m.seqLen} tokens of ${m.file ?? a.calibration.file} (base loss ${m.baseNll.toFixed(4)} nats)`,
    '                 mean-compensated                         |  plain (replaced by nothing)',
    'block    part    loss Δ      KL    stream TE   output TE  |  loss Δ      KL',
  ];
  a.blocks.forEach((b, l) => {
    const parts = [
      ['block', m.block[l], m.kl.block[l], b.teStream, b.te, m.plain?.block[l], m.plain?.kl.block[l]],
      ['attn', m.attn[l], m.kl.attn[l], b.teStreamAttn, b.teAttn, m.plain?.attn[l], m.plain?.kl.attn[l]],
      ['mlp', m.mlp[l], m.kl.mlp[l], b.teStreamMlp, b.teMlp, m.plain?.mlp[l], m.plain?.kl.mlp[l]],
    ] as const;
    for (const [name, d, kl, st, ot, pd, pkl] of parts)
      lines.push(`${String(l).padStart(5)}  ${name.padEnd(6)}  ${f(d).padStart(8)}  ${f(kl).padStart(8)}  ${f(st).padStart(10)}  ${f(ot).padStart(10)}  |  ${f(pd).padStart(8)}  ${f(pkl).padStart(8)}`);
  });
  for (const e of ['stream-te', 'output-te'] as const)
    lines.push(
      `${e}: Spearman ρ against the KL — blocks ${rho(m.agreement[e]?.blocks)}, attention and MLP layers ${rho(m.agreement[e]?.sublayers)}; ` +
        `against the loss increase — ${rho(m.agreementWithLoss[e]?.blocks)}, ${rho(m.agreementWithLoss[e]?.sublayers)}`,
    );
  return lines.join('\n');
}

export function registerSensitivityCommand(program: Command): void {
  program
    .command('sensitivity')
    .description('measure the held-out damage of removing each block, attention layer and MLP layer alone, beside the TE estimators')
    .argument('<model>', 'HF directory, .gguf file or llama2.c .bin')
    .requiredOption('--calib <file>', 'calibration text (its means compensate the removed parts)')
    .option('--eval <file>', 'text the damage is measured on (default: other windows of the calibration text)')
    .option('--tokenizer <file>', 'tokenizer override')
    .option('--samples <n>', 'calibration windows (default 128)', intOption('samples', 1))
    .option('--seq-len <n>', 'window length (default min(2048, context))', intOption('seq-len', 2))
    .option('--windows <n>', 'windows the damage is measured on (default 16)', intOption('windows', 1))
    .option('--seed <n>', 'sampling seed', intOption('seed', 0), 0)
    .option('--threads <n>', 'CPU threads (default: all cores)', intOption('threads', 1))
    .addOption(deviceOpt())
    .option('-o, --output <file>', 'analysis JSON to write (it plans like any analysis)', 'sensitivity.analysis.json')
    .option('--json', 'print JSON')
    .action(async (modelPath: string, o: SensitivityCli) => {
      setThreads(o.threads);
      const device = announceDevice(o.device, o.json, 'calibration');
      const model = await loadModel(modelPath);
      const needsTokenizer = [o.calib, o.eval].some((f) => f && (!/\.(json|tokens|i32)$/i.test(f) || /\.jsonl$/i.test(f)));
      const bar = new ProgressBar('sensitivity', { quiet: o.json });
      const r = await analyzeToFile(model, o.output, {
        calib: o.calib,
        tokenizer: needsTokenizer ? tokenizerFor(model, o.tokenizer) : undefined,
        samples: o.samples,
        seqLen: o.seqLen,
        seed: o.seed,
        sensitivity: { windows: o.windows, text: o.eval, plain: true },
        ...cudaDevicesOption(device),
        onProgress: (p) => bar.update(p),
        onSensitivityProgress: (p) => bar.update(p),
        signal: interruptSignal(),
      });
      bar.finish();
      const a = r.analysis;
      if (o.json) process.stdout.write(JSON.stringify({ output: o.output, sensitivity: a.sensitivity, estimators: a.blocks.map((b) => ({ te: b.te, teAttn: b.teAttn, teMlp: b.teMlp, teStream: b.teStream, teStreamAttn: b.teStreamAttn, teStreamMlp: b.teStreamMlp })) }) + '\n');
      else process.stdout.write(`${table(a)}\nanalysis written to ${o.output}\n`);
    });
}
