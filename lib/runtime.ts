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
 * Resolve a --device request. The forward pass runs on the CPU in this release; CUDA requests are checked
 * against the machine and fall back to the CPU with the reason when no usable GPU is there.
 */
export function resolveDevice(request: DeviceRequest = 'auto'): { device: 'cpu'; note?: string } {
  if (request === 'cpu') return { device: 'cpu' };
  const probe = cudaInfo();
  if (!probe.available) return { device: 'cpu', note: probe.message };
  return { device: 'cpu', note: `CUDA device found (${probe.devices[0]?.name}), but the CUDA forward pass is not in this release: using the CPU` };
}
