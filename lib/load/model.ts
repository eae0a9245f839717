// Load stage: open a model from a Hugging Face directory, a .gguf file or a llama2.c .bin checkpoint.
// Weights stay memory-mapped in the native core; this class is the typed handle the other stages take.
import * as fs from 'node:fs';

import { native, NativeModel, NativeModelInfo } from '../native';
import { checkInput } from '../util/input-file';
import { cancelledError, EntropruneError } from '../util/errors';
import { awaitNativeJob } from '../util/native-job';
import type { ProgressEvent } from '../util/progress';

export type ModelInfo = NativeModelInfo;

export class Model {
  /** @internal */
  readonly handle: NativeModel;
  readonly info: ModelInfo;

  private constructor(handle: NativeModel) {
    this.handle = handle;
    this.info = handle.info();
  }

  /** @internal */
  static fromHandle(handle: NativeModel): Model {
    return new Model(handle);
  }

  get path(): string {
    return this.info.path;
  }

  /**
   * Release the model's native memory (mapped file, converted weights) now instead of whenever the garbage
   * collector gets to it; jobs still running keep it until they end. Using the model afterwards throws
   * EP_INVALID_ARGUMENT. Also `await using model = await loadModel(…)`.
   */
  dispose(): void {
    this.handle.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

export interface LoadModelOptions {
  /**
   * Layer streaming: leave BF16/F16 block matrices in the file and convert each block when a pass reaches
   * it (one block in float32 memory at a time, instead of the whole model). Analysis then runs block by
   * block too (`analyze` with `stream`); forward passes, apply and evaluation work as usual, converting
   * blocks as they go; generation needs a model loaded without it.
   */
  streamLayers?: boolean;
  /** blocks bound so far (converting F16/BF16 weights to float32 is most of a load) */
  onProgress?: (p: ProgressEvent) => void;
  /** cancels between blocks: rejects with EP_CANCELLED (the signal's reason as cause) and keeps nothing */
  signal?: AbortSignal;
}

function isLink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

export async function loadModel(modelPath: string, options: LoadModelOptions = {}): Promise<Model> {
  if (!fs.existsSync(modelPath) && !isLink(modelPath)) {
    throw new EntropruneError('EP_IO', `${modelPath}: no such file or directory (expected a Hugging Face model directory, a .gguf file or a llama2.c .bin checkpoint)`, modelPath);
  }
  checkInput(modelPath, 'model', 'file or folder');
  // An already-aborted signal loads nothing (a small model would otherwise finish before the cancel lands).
  if (options.signal?.aborted) throw cancelledError(options.signal);
  const job = native().loadModel(modelPath, { streamLayers: options.streamLayers ?? false }, (done, total) => options.onProgress?.({ done, total }));
  return Model.fromHandle(await awaitNativeJob(job, options.signal));
}
