// Option parsers and process helpers shared by the CLI commands.
import { InvalidArgumentError } from 'commander';

import type { DeviceRequest } from '../runtime';

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

export { interruptSignal } from '../util/interrupt';

export function floatOption(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
    return n;
  };
}
