// Calibration data (docs/METHOD.md section 7): N random windows of seqLen tokens from one tokenized stream,
// drawn with a seeded generator so the same seed gives the same samples on every machine
// (start = randint(0, N_tokens − seqLen − 1) per sample, as the authors' code).
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Tokenizer } from '../load/tokenizer';
import { seededRandom } from '../util/random';
import { encodeOffThread } from '../load/tokenize-off-thread';
import { checkInput } from '../util/input-file';
import { EntropruneError } from '../util/errors';

export interface CalibrationOptions {
  samples?: number; // default 128
  seqLen: number;
  seed?: number; // default 0
}

/** Calibration windows: `samples` × `seqLen` token ids (what least-squares compensation refits on). */
export interface CalibrationWindows {
  tokens: Int32Array;
  samples: number;
  seqLen: number;
}

export interface CalibrationSet {
  file: string;
  kind: 'text' | 'jsonl' | 'tokens';
  streamTokens: number;
  samples: number;
  seqLen: number;
  seed: number;
  starts: number[];
  tokens: Int32Array; // samples × seqLen
}

/**
 * The token stream of a calibration file: plain text (BOS once at the start), JSONL with a `text` field
 * per line (documents joined by a space, as the authors join WikiText), or pre-tokenized ids — a `.json`
 * array of integers, or raw little-endian int32 in a `.tokens` / `.i32` file.
 */
export function calibrationStream(file: string, tokenizer: Tokenizer | undefined): { kind: CalibrationSet['kind']; stream: Int32Array } {
  const r = readCalibration(file, tokenizer);
  return 'stream' in r ? r : { kind: r.kind, stream: tokenizer!.encode(r.text, { bos: true }) };
}

/** calibrationStream, with a long text tokenized off the main thread (Ctrl-C stays responsive). */
export async function calibrationStreamAsync(file: string, tokenizer: Tokenizer | undefined, signal?: AbortSignal): Promise<{ kind: CalibrationSet['kind']; stream: Int32Array }> {
  const r = readCalibration(file, tokenizer);
  return 'stream' in r ? r : { kind: r.kind, stream: await encodeOffThread(tokenizer!, r.text, { bos: true }, signal) };
}

// The ids of a pre-tokenized file, or the text still to tokenize (checked, with a tokenizer present).
function readCalibration(file: string, tokenizer: Tokenizer | undefined): { kind: CalibrationSet['kind']; stream: Int32Array } | { kind: CalibrationSet['kind']; text: string } {
  checkInput(file, 'calibration file');
  const ext = path.extname(file).toLowerCase();
  if (ext === '.tokens' || ext === '.i32') {
    const buf = fs.readFileSync(file);
    if (buf.length % 4 !== 0) throw new EntropruneError('EP_FORMAT', `${file}: pre-tokenized file size ${buf.length} is not a multiple of 4 (int32 ids)`, file);
    return { kind: 'tokens', stream: new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)) };
  }
  const raw = fs.readFileSync(file, 'utf8');
  if (ext === '.json') {
    let ids: unknown;
    try {
      ids = JSON.parse(raw);
    } catch (e) {
      throw new EntropruneError('EP_FORMAT', `${file}: a pre-tokenized .json calibration file must be one JSON array of ids: ${(e as Error).message}`, file);
    }
    if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 31))
      throw new EntropruneError('EP_FORMAT', `${file}: a pre-tokenized .json must be one array of non-negative integer ids`, file);
    return { kind: 'tokens', stream: Int32Array.from(ids as number[]) };
  }
  if (!tokenizer) throw new EntropruneError('EP_TOKENIZER', `${file}: text calibration needs a tokenizer`, file);
  if (ext === '.jsonl') {
    const texts: string[] = [];
    raw.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let obj: { text?: unknown };
      try {
        obj = JSON.parse(line);
      } catch {
        throw new EntropruneError('EP_FORMAT', `${file}:${i + 1}: not a JSON object`, file);
      }
      if (typeof obj.text !== 'string') throw new EntropruneError('EP_FORMAT', `${file}:${i + 1}: no "text" string field`, file);
      texts.push(obj.text);
    });
    return { kind: 'jsonl', text: texts.join(' ') };
  }
  if (raw.trim().length === 0) throw new EntropruneError('EP_INVALID_ARGUMENT', `${file}: the calibration text is empty`, file);
  return { kind: 'text', text: raw };
}

export function sampleCalibration(file: string, kind: CalibrationSet['kind'], stream: Int32Array, vocab: number, o: CalibrationOptions): CalibrationSet {
  const samples = o.samples ?? 128;
  const seed = o.seed ?? 0;
  if (!Number.isInteger(samples) || samples < 1) throw new EntropruneError('EP_INVALID_ARGUMENT', `samples must be a positive integer (got ${samples})`);
  if (!Number.isInteger(o.seqLen) || o.seqLen < 2) throw new EntropruneError('EP_INVALID_ARGUMENT', `seq-len must be an integer >= 2 (got ${o.seqLen})`);
  // Bounded before anything is allocated: samples × seq-len tokens are copied and run through the model.
  const MAX_TOKENS = 2 ** 27;
  if (samples * o.seqLen > MAX_TOKENS)
    throw new EntropruneError('EP_INVALID_ARGUMENT', `samples × seq-len = ${samples} × ${o.seqLen} = ${samples * o.seqLen} calibration tokens, more than the ${MAX_TOKENS} entroprune accepts: lower --samples or --seq-len`);
  // The generator is 32-bit: a larger seed would be used mod 2³² while the analysis records it as given.
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new EntropruneError('EP_INVALID_ARGUMENT', `seed must be an integer in [0, 4294967295] (got ${seed})`);
  if (stream.length < o.seqLen + 1)
    throw new EntropruneError(
      'EP_INVALID_ARGUMENT',
      `${file}: the calibration stream has ${stream.length} tokens, too short for one window of ${o.seqLen}: use a longer text or a smaller --seq-len`,
      file,
    );
  for (let i = 0; i < stream.length; i++)
    if (stream[i] < 0 || stream[i] >= vocab)
      throw new EntropruneError('EP_INVALID_ARGUMENT', `${file}: token id ${stream[i]} at position ${i} is outside the model's vocabulary of ${vocab}`, file);
  const rand = seededRandom(seed);
  const span = stream.length - o.seqLen; // starts in [0, N − seqLen − 1], as randint(0, N − seqLen − 1)
  const starts: number[] = [];
  const tokens = new Int32Array(samples * o.seqLen);
  for (let s = 0; s < samples; s++) {
    const start = Math.floor(rand() * span);
    starts.push(start);
    tokens.set(stream.subarray(start, start + o.seqLen), s * o.seqLen);
  }
  return { file, kind, streamTokens: stream.length, samples, seqLen: o.seqLen, seed, starts, tokens };
}

/** True when two paths name the same file (calibrating and evaluating on one text inflates results). */
export function sameFile(a: string, b: string): boolean {
  try {
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return path.resolve(a) === path.resolve(b);
  }
}
