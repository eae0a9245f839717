// Random-weight models at real LLaMA shapes (native core/synthetic/synthetic_model.h), for timing and memory runs:
// quality needs real models, timing does not. Written atomically like every output.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { native } from './native';
import { temporaryPath } from './util/atomic';
import { EntropruneError, fromNative } from './util/errors';
import { interrupted, trackTemporary } from './util/interrupt';
import { awaitNativeJob } from './util/native-job';
import type { ProgressEvent } from './util/progress';

export const SYNTHETIC_PRESETS = ['llama2-7b', 'llama2-13b', 'llama2-70b', 'llama3-8b', 'llama3-70b', 'mistral-7b'] as const;
export type SyntheticPreset = (typeof SYNTHETIC_PRESETS)[number];

export interface SyntheticOptions {
  output: string;
  /** gguf (default when the output ends in .gguf) or a Hugging Face directory */
  format?: 'gguf' | 'hf';
  dtype?: 'f32' | 'f16' | 'bf16'; // bf16
  /** keep only the first N blocks (time one block of a big shape) */
  layers?: number;
  seed?: number;
  force?: boolean;
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
}

export async function writeSyntheticModel(preset: SyntheticPreset, o: SyntheticOptions): Promise<{ output: string; format: 'gguf' | 'hf'; bytes: number }> {
  const out = path.resolve(o.output);
  const format = o.format ?? (/\.gguf$/i.test(out) ? 'gguf' : 'hf');
  if (fs.existsSync(out) && !o.force) throw new EntropruneError('EP_IO', `${o.output}: already exists (pass --force to replace it)`, o.output);
  const tmp = temporaryPath(out);
  fs.rmSync(tmp, { recursive: true, force: true });
  if (format === 'hf') fs.mkdirSync(tmp);
  const untrack = trackTemporary(tmp);
  try {
    const job = native().writeSyntheticModel({ preset, layers: o.layers, dtype: o.dtype ?? 'bf16', seed: o.seed ?? 1, format }, tmp, (done, total) =>
      o.onProgress?.({ done, total }),
    );
    await awaitNativeJob(job, o.signal);
    if (interrupted()) throw new EntropruneError('EP_CANCELLED', 'cancelled');
    if (fs.existsSync(out)) fs.rmSync(out, { recursive: true, force: true });
    fs.renameSync(tmp, out);
    const bytes = format === 'gguf' ? fs.statSync(out).size : fs.readdirSync(out).reduce((n, f) => n + fs.statSync(path.join(out, f)).size, 0);
    return { output: out, format, bytes };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (interrupted()) throw new EntropruneError('EP_CANCELLED', 'cancelled');
    throw fromNative(e);
  } finally {
    untrack();
  }
}
