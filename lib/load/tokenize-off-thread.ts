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
// the TypeScript sources under test; the library is required by its resolved path. It encodes a list of
// texts and sends back their ids back to back with each one's length.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { Tokenizer } = require(workerData.library);
const t = new Tokenizer(workerData.json, workerData.config);
const parts = workerData.texts.map((s) => t.encode(s, { add_special_tokens: false }).ids);
const lengths = Int32Array.from(parts, (p) => p.length);
const flat = new Int32Array(lengths.reduce((a, b) => a + b, 0));
let at = 0;
for (const p of parts) { flat.set(p, at); at += p.length; }
parentPort.postMessage({ flat, lengths }, [flat.buffer, lengths.buffer]);
`;

/** Below this many characters in all, texts are encoded in place: a worker costs more than it saves. */
const OFF_THREAD_CHARS = 65536;

/** The text's ids as `tokenizer.encode` gives them, computed without blocking the event loop. */
export async function encodeOffThread(tokenizer: Tokenizer, text: string, options: { bos?: boolean } = {}, signal?: AbortSignal): Promise<Int32Array> {
  return (await encodeAllOffThread(tokenizer, [text], options, signal))[0];
}

/** Each text's ids as `tokenizer.encode` gives them (in order), computed without blocking the event loop. */
export async function encodeAllOffThread(tokenizer: Tokenizer, texts: string[], options: { bos?: boolean } = {}, signal?: AbortSignal): Promise<Int32Array[]> {
  const chars = texts.reduce((n, t) => n + t.length, 0);
  if (tokenizer.kind !== 'tokenizer.json' || chars < OFF_THREAD_CHARS) return texts.map((t) => tokenizer.encode(t, options));
  const configFile = path.join(path.dirname(tokenizer.source), 'tokenizer_config.json');
  const workerData = {
    library: require.resolve('@huggingface/tokenizers'),
    json: JSON.parse(fs.readFileSync(tokenizer.source, 'utf8')),
    config: fs.existsSync(configFile) ? JSON.parse(fs.readFileSync(configFile, 'utf8')) : {},
    texts,
  };
  const { flat, lengths } = await new Promise<{ flat: Int32Array; lengths: Int32Array }>((resolve, reject) => {
    const worker = new Worker(WORKER, { eval: true, workerData });
    const onAbort = () => {
      void worker.terminate();
      reject(new EntropruneError('EP_CANCELLED', 'cancelled'));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (m: { flat: Int32Array; lengths: Int32Array }) => resolve(m));
    worker.once('error', (e) => reject(new EntropruneError('EP_TOKENIZER', `${tokenizer.source}: ${e.message}`, tokenizer.source)));
    worker.once('exit', () => signal?.removeEventListener('abort', onAbort));
  });
  const bos = options.bos ? 1 : 0;
  const out: Int32Array[] = [];
  let at = 0;
  for (const n of lengths) {
    const ids = new Int32Array(n + bos);
    if (bos) ids[0] = tokenizer.bos;
    ids.set(flat.subarray(at, at + n), bos);
    out.push(ids);
    at += n;
  }
  return out;
}
