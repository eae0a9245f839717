// Long texts through a tokenizer.json tokenizer off the main thread. @huggingface/tokenizers is JavaScript:
// tokenizing megabytes of calibration text on the main thread blocked the event loop for many seconds, so
// Ctrl-C / SIGTERM were not handled (and no progress drawn) until it finished. A worker thread builds the
// same tokenizer from the same files and encodes there; an abort terminates it at once. The native
// SentencePiece tokenizers (llama2.c, GGUF) are C++ and fast: they encode in place.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { EntropruneError } from '../util/errors';
import type { Tokenizer } from './tokenizer';

// The worker is given as code (not a file) so that it runs the same from the compiled package and from
// the TypeScript sources under test; the library is required by its resolved path.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { Tokenizer } = require(workerData.library);
const t = new Tokenizer(workerData.json, workerData.config);
const ids = Int32Array.from(t.encode(workerData.text, { add_special_tokens: false }).ids);
parentPort.postMessage(ids, [ids.buffer]);
`;

/** The text's ids as `tokenizer.encode` gives them, computed without blocking the event loop. */
export async function encodeOffThread(tokenizer: Tokenizer, text: string, options: { bos?: boolean } = {}, signal?: AbortSignal): Promise<Int32Array> {
  if (tokenizer.kind !== 'tokenizer.json' || text.length < 65536) return tokenizer.encode(text, options);
  const configFile = path.join(path.dirname(tokenizer.source), 'tokenizer_config.json');
  const workerData = {
    library: require.resolve('@huggingface/tokenizers'),
    json: JSON.parse(fs.readFileSync(tokenizer.source, 'utf8')),
    config: fs.existsSync(configFile) ? JSON.parse(fs.readFileSync(configFile, 'utf8')) : {},
    text,
  };
  const ids = await new Promise<Int32Array>((resolve, reject) => {
    const worker = new Worker(WORKER, { eval: true, workerData });
    const onAbort = () => {
      void worker.terminate();
      reject(new EntropruneError('EP_CANCELLED', 'cancelled'));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (m: Int32Array) => resolve(m));
    worker.once('error', (e) => reject(new EntropruneError('EP_TOKENIZER', `${tokenizer.source}: ${e.message}`, tokenizer.source)));
    worker.once('exit', () => signal?.removeEventListener('abort', onAbort));
  });
  if (!options.bos) return ids;
  const out = new Int32Array(ids.length + 1);
  out[0] = tokenizer.bos;
  out.set(ids, 1);
  return out;
}
