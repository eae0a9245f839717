// Process-wide runtime settings: CPU threads and the compute device.
import { CudaProbe, native } from './native';
import { EntropruneError } from './util/errors';

/** Threads for OpenBLAS and the engine's own loops; 0 or undefined = all cores. Returns the count in use. */
export function setThreads(n?: number): number {
  if (n !== undefined && (!Number.isInteger(n) || n < 0)) throw new EntropruneError('EP_INVALID_ARGUMENT', `threads must be a non-negative integer (got ${n})`);
  return native().setThreads(n ?? 0);
}

export function cudaInfo(): CudaProbe {
  return native().cudaProbe();
}

export type DeviceRequest = 'cpu' | 'cuda' | 'auto' | `cuda:${number}`;

/**
 * What a command runs on the GPU: the calibration forward pass (analyze; prune and compare, whose evaluations
 * also run there), evaluation alone (eval ppl, eval tasks), or nothing yet (the rest).
 */
export type DeviceStage = 'calibration' | 'evaluation' | 'compensation' | 'other';

export interface ResolvedDevice {
  device: 'cpu' | 'cuda';
  /** the CUDA devices when device is 'cuda': every visible one for `cuda`/`auto`, the one named by `cuda:N` */
  indices?: number[];
  /** why this device, for the user (absent when the CPU was asked for) */
  note?: string;
}

/**
 * Resolve a --device request. CUDA runs the calibration of analyze, prune and compare (block by block, weights
 * streamed to the GPU, the statistics summed there), their measured sensitivities, the refinement's plan loss and the
 * forward pass of least-squares compensation's capture (prune, compare, apply; on the first GPU), and evaluation (perplexity and zero-shot scoring: eval ppl,
 * eval tasks, and the evaluations of prune --report and compare); generation, bench and the throughput
 * column run on the CPU in this release. A CUDA request on a machine without a usable GPU falls back to the
 * CPU and says why; a device index the machine does not have is an error.
 */
export function resolveDevice(request: DeviceRequest = 'auto', stage: DeviceStage = 'other'): ResolvedDevice {
  if (request === 'cpu') return { device: 'cpu' };
  const probe = cudaInfo();
  if (!probe.available) return { device: 'cpu', note: probe.message };
  const named = request.startsWith('cuda:') ? Number(request.slice(5)) : undefined;
  const gpus = named === undefined ? probe.devices : probe.devices.filter((d) => d.index === named);
  if (!gpus.length) {
    throw new EntropruneError('EP_INVALID_ARGUMENT', `--device ${request}: this machine has CUDA devices ${probe.devices.map((d) => `cuda:${d.index}`).join(', ')}`);
  }
  const names = gpus.map((d) => `cuda:${d.index} (${d.name})`).join(', ');
  if (stage === 'other')
    return { device: 'cpu', note: `CUDA found (${names}); this command runs on the CPU (CUDA covers calibration and evaluation: analyze, prune, compare, eval)` };
  const split = gpus.length > 1 ? ', the windows split between them' : '';
  return {
    device: 'cuda',
    indices: gpus.map((d) => d.index),
    note:
      stage === 'evaluation'
        ? `evaluation on ${names}${split}`
        : stage === 'compensation'
          ? `the forward pass of least-squares compensation's capture on cuda:${gpus[0].index} (${gpus[0].name}); its covariances, the solves and the slicing on the CPU`
          : `calibration, evaluation, the plan's refinement and least-squares compensation's forward passes on ${names}${split}; the estimators, planning, covariances and slicing on the CPU`,
  };
}
