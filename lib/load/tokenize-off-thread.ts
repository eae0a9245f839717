// Long texts through a tokenizer.json tokenizer without blocking the event loop. The sync path
// (`tokenizer.encode`) is @huggingface/tokenizers, pure JavaScript: 200 kB of TinyStories took 2.7 s there.
// Long texts go to Hugging Face's own Rust tokenizer instead — the npm package `tokenizers`, an optional
// dependency with a prebuilt binary for every common platform inside it — which encodes them in ~0.13 s on
// its own threads and gives the same ids (test/tokenizer-speed.test.ts checks it on real text). Where that
// package is missing, a worker thread runs the JavaScript tokenizer. An abort lands at once either way: the
// Rust call is left to finish in the background, the worker is terminated. The SentencePiece tokenizers
// (llama2.c, GGUF vocabularies) are C++: long texts go to a native job on a worker thread.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { cancelledError, EntropruneError } from '../util/errors';
import type { NativeJob } from '../native';
import { awaitNativeJob } from '../util/native-job';
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

/** Below this many characters in all, texts are encoded in place: handing them over costs more than it saves. */
const OFF_THREAD_CHARS = 65536;
/** Texts per call into the Rust tokenizer. */
const RUST_CHUNK = 1024;

interface RustTokenizer {
  encodeBatch(sentences: string[], options?: { addSpecialTokens?: boolean }): Promise<{ getIds(): number[] }[]>;
}
type RustTokenizers = { Tokenizer: { fromFile(file: string): RustTokenizer } };

let rust: RustTokenizers | null | undefined;
const rustBySource = new Map<string, RustTokenizer>();

/** Drop the Rust tokenizer kept for a tokenizer.json file (its Tokenizer was disposed). */
export function forgetRustTokenizer(source: string): void {
  rustBySource.delete(source);
}

/** The `tokenizers` package when it is installed and loads on this platform, else null. */
export function rustTokenizers(): RustTokenizers | null {
  if (rust === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      rust = require('tokenizers') as RustTokenizers;
    } catch {
      rust = null;
    }
  }
  if (process.env.ENTROPRUNE_NO_RUST_TOKENIZER === '1') return null; // the fallback, for tests
  return rust;
}


/** `work` unless `signal` aborts first; then a rejection at once (the work may finish in the background). */
function raceAbort<T>(work: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(cancelledError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelledError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** The text's ids as `tokenizer.encode` gives them, computed without blocking the event loop. */
export async function encodeOffThread(tokenizer: Tokenizer, text: string, options: { bos?: boolean } = {}, signal?: AbortSignal): Promise<Int32Array> {
  return (await encodeAllOffThread(tokenizer, [text], options, signal))[0];
}

/** Each text's ids as `tokenizer.encode` gives them (in order), computed without blocking the event loop. */
export async function encodeAllOffThread(tokenizer: Tokenizer, texts: string[], options: { bos?: boolean } = {}, signal?: AbortSignal): Promise<Int32Array[]> {
  const chars = texts.reduce((n, t) => n + t.length, 0);
  if (chars < OFF_THREAD_CHARS) return texts.map((t) => tokenizer.encode(t, options));
  if (tokenizer.kind !== 'tokenizer.json') {
    // SentencePiece (llama2.c, GGUF): the C++ encoder on a worker thread; an abort lands at once (the
    // native job stops at the next text)
    const spm = tokenizer as Tokenizer & { encodeAllNative?(texts: string[], bos: boolean): NativeJob<{ flat: Int32Array; lengths: Int32Array }> };
    if (!spm.encodeAllNative) return texts.map((t) => tokenizer.encode(t, options));
    const { flat, lengths } = await raceAbort(awaitNativeJob(spm.encodeAllNative(texts, options.bos ?? false), signal), signal);
    return splitIds(flat, lengths, (ids) => ids.slice());
  }
  const bos = options.bos ? 1 : 0;
  const withBos = (ids: ArrayLike<number>) => {
    const out = new Int32Array(ids.length + bos);
    if (bos) out[0] = tokenizer.bos;
    out.set(ids, bos);
    return out;
  };
  const lib = rustTokenizers();
  if (lib) {
    let t = rustBySource.get(tokenizer.source);
    if (!t) {
      try {
        t = lib.Tokenizer.fromFile(tokenizer.source);
      } catch (e) {
        throw new EntropruneError('EP_TOKENIZER', `${tokenizer.source}: ${(e as Error).message}`, tokenizer.source);
      }
      rustBySource.set(tokenizer.source, t);
    }
    // In chunks: turning each encoding into ids runs on the main thread, so between chunks the event loop
    // turns and an abort lands (a task set is tens of thousands of short texts).
    const out: Int32Array[] = [];
    for (let i = 0; i < texts.length; i += RUST_CHUNK) {
      const encodings = await raceAbort(t.encodeBatch(texts.slice(i, i + RUST_CHUNK), { addSpecialTokens: false }), signal);
      for (const e of encodings) out.push(withBos(e.getIds()));
      if (signal?.aborted) throw cancelledError(signal);
    }
    return out;
  }
  return encodeInWorker(tokenizer, texts, signal, withBos);
}

async function encodeInWorker(tokenizer: Tokenizer, texts: string[], signal: AbortSignal | undefined, withBos: (ids: ArrayLike<number>) => Int32Array): Promise<Int32Array[]> {
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
      reject(cancelledError(signal));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (m: { flat: Int32Array; lengths: Int32Array }) => resolve(m));
    worker.once('error', (e) => reject(new EntropruneError('EP_TOKENIZER', `${tokenizer.source}: ${e.message}`, tokenizer.source)));
    worker.once('exit', () => signal?.removeEventListener('abort', onAbort));
  });
  return splitIds(flat, lengths, withBos);
}

/** Texts' ids handed back back to back with each one's length: one array per text, made by `each`. */
function splitIds(flat: Int32Array, lengths: ArrayLike<number>, each: (ids: Int32Array) => Int32Array): Int32Array[] {
  const out: Int32Array[] = [];
  let at = 0;
  for (let i = 0; i < lengths.length; i++) {
    out.push(each(flat.subarray(at, at + lengths[i])));
    at += lengths[i];
  }
  return out;
}
