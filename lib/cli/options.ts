// Option parsers and process helpers shared by the CLI commands.
import { InvalidArgumentError, Option } from 'commander';

import { DEFAULT_GENERATION_PROMPTS } from '../evaluate/generation';
import { beyondContextWarning } from '../evaluate/perplexity';
import { resolveDevice, type DeviceRequest, type DeviceStage, type ResolvedDevice } from '../runtime';

/** --generation-prompts of the commands that evaluate (compare, prune --report). */
export const GENERATION_PROMPTS_HELP =
  `held-out prompts each model continues greedily (48 tokens) for the loop and repetition figures (default ${DEFAULT_GENERATION_PROMPTS}; 0: none). A loop rate of a few per cent needs hundreds to measure`;

export const STREAM_HELP =
  'layer streaming: run the calibration block by block and convert BF16/F16 weights one block at a time (models larger than memory; same results)';

export function intOption(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

export function deviceOption(value: string): DeviceRequest {
  if (value === 'cpu' || value === 'cuda' || value === 'auto' || /^cuda:\d+$/.test(value)) return value as DeviceRequest;
  throw new InvalidArgumentError('device must be cpu, cuda, cuda:N or auto');
}

/** The option naming the GPUs that run calibration or evaluation, if any (none: the CPU). */
export const cudaDevicesOption = (d: ResolvedDevice): { cudaDevices?: number[] } => (d.device === 'cuda' && d.indices ? { cudaDevices: d.indices } : {});

/** --compensation-mode: how apply compensates removed heads and channels (ApplyOptions.compensation). */
export const compensationModeOption = () =>
  new Option('--compensation-mode <mode>', 'least-squares: refit the kept o_proj/down_proj columns on the calibration windows (default); bias: the paper\'s mean-output bias only')
    .choices(['least-squares', 'bias']);

/** --device, the same on every command that runs the model. */
export const deviceOpt = () =>
  new Option('--device <device>', 'cpu, cuda, cuda:N or auto (auto prefers CUDA and says which it chose)').default('auto').argParser(deviceOption);

/** Resolve --device; unless the CPU was asked for, say on stderr which device runs and why. */
export function announceDevice(request: DeviceRequest, json?: boolean, stage: DeviceStage = 'other'): ResolvedDevice {
  const device = resolveDevice(request, stage);
  // Say which device runs what only when the user asked for one (--device cuda…) or a GPU was used: on a
  // machine without a GPU, the default `auto` runs on the CPU silently.
  if (device.note && !json && request !== 'cpu' && (request !== 'auto' || device.device === 'cuda')) process.stderr.write(`device: ${device.note}\n`);
  return device;
}

export { interruptSignal } from '../util/interrupt';

export function floatOption(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
    return n;
  };
}

/** Windows longer than the model was trained on run, but its positions past the context mean little. */
export function warnBeyondContext(model: { info: { context: number; path: string } }, seqLen: number | undefined, quiet?: boolean, flag = '--seq-len'): void {
  const warning = beyondContextWarning(model.info, seqLen, flag);
  if (warning) printWarning(warning, quiet);
}

/** A warning on stderr, in the one form every command uses (none with --json). */
export function printWarning(message: string, quiet?: boolean): void {
  if (!quiet) process.stderr.write(`entroprune: warning: ${message}\n`);
}
