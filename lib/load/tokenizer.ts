// Tokenizers, chosen to match the model:
//   - Hugging Face tokenizer.json through @huggingface/tokenizers (a maintained implementation; no
//     hand-written BPE for this format),
//   - llama2.c tok*.bin and the SentencePiece vocab embedded in GGUF files through the native core
//     (tiny formats that no library reads; see native/core/format/tokenizer_spm.cpp).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

import { native, type NativeJob, NativeSpmTokenizer } from '../native';
import { checkInput } from '../util/input-file';
import { EntropruneError, fromNative } from '../util/errors';
import { readJsonFile } from '../util/json-file';
import { forgetRustTokenizer } from './tokenize-off-thread';
import type { Model } from './model';

export interface Tokenizer {
  readonly kind: 'tokenizer.json' | 'llama2c' | 'gguf';
  /** File the vocabulary came from. */
  readonly source: string;
  readonly vocabSize: number;
  readonly bos: number;
  readonly eos: number;
  /** Encode text; with `bos` the BOS id is prepended once. */
  encode(text: string, options?: { bos?: boolean }): Int32Array;
  decode(ids: ArrayLike<number>): string;
  /** Release the vocabulary now (native memory for SentencePiece vocabularies); using it afterwards throws. */
  dispose(): void;
}

class SpmTokenizer implements Tokenizer {
  constructor(
    readonly kind: 'llama2c' | 'gguf',
    readonly source: string,
    private readonly impl: NativeSpmTokenizer,
  ) {}
  get vocabSize(): number {
    return this.impl.size;
  }
  get bos(): number {
    return this.impl.bos;
  }
  get eos(): number {
    return this.impl.eos;
  }
  encode(text: string, options: { bos?: boolean } = {}): Int32Array {
    return this.impl.encode(text, options.bos ?? false);
  }
  /** The same ids as encode, for many or long texts, off the main thread (tokenize-off-thread.ts). */
  encodeAllNative(texts: string[], bos: boolean): NativeJob<{ flat: Int32Array; lengths: Int32Array }> {
    return this.impl.encodeAll(texts, bos);
  }
  decode(ids: ArrayLike<number>): string {
    return this.impl.decode(Int32Array.from(ids));
  }
  dispose(): void {
    this.impl.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

class JsonTokenizer implements Tokenizer {
  readonly kind = 'tokenizer.json' as const;
  private impl: HfTokenizer | null;
  constructor(
    readonly source: string,
    impl: HfTokenizer,
    readonly vocabSize: number,
    readonly bos: number,
    readonly eos: number,
  ) {
    this.impl = impl;
  }
  private live(): HfTokenizer {
    if (!this.impl) throw new EntropruneError('EP_INVALID_ARGUMENT', `${this.source}: this tokenizer was disposed`, this.source);
    return this.impl;
  }
  encode(text: string, options: { bos?: boolean } = {}): Int32Array {
    const ids = this.live().encode(text, { add_special_tokens: false }).ids;
    const out = new Int32Array(ids.length + (options.bos ? 1 : 0));
    if (options.bos) out[0] = this.bos;
    out.set(ids, options.bos ? 1 : 0);
    return out;
  }
  decode(ids: ArrayLike<number>): string {
    return this.live().decode(Array.from(ids), { skip_special_tokens: true });
  }
  /** Drops the JavaScript tables and the Rust tokenizer kept for this file (tokenize-off-thread.ts). */
  dispose(): void {
    this.impl = null;
    forgetRustTokenizer(this.source);
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

const readJson = (file: string) => readJsonFile(file, 'tokenizer JSON', 'EP_TOKENIZER') as Record<string, unknown>;

export function loadTokenizerJson(file: string, bosFallback = 1, eosFallback = 2): Tokenizer {
  const json = readJson(file);
  const configFile = path.join(path.dirname(file), 'tokenizer_config.json');
  const config = fs.existsSync(configFile) ? readJson(configFile) : {};
  // Ids are bounded by what the file holds before the tokenizer library sees them: one added token with
  // id 1e9 made it spend 88 s building tables before any check. Real vocabularies are dense.
  const model = (json.model ?? {}) as { vocab?: unknown };
  const added = Array.isArray(json.added_tokens) ? (json.added_tokens as { id?: unknown; content?: unknown }[]) : [];
  const entries = (model.vocab && typeof model.vocab === 'object' ? Object.keys(model.vocab as object).length : 0) + added.length;
  const limit = 2 * entries + 1024;
  for (const t of added)
    if (!Number.isInteger(t.id) || (t.id as number) < 0 || (t.id as number) >= limit)
      throw new EntropruneError('EP_TOKENIZER', `${file}: added token ${JSON.stringify(t.content)} has id ${String(t.id)}, far outside a vocabulary of ${entries} entries`, file);
  let impl: HfTokenizer;
  try {
    impl = new HfTokenizer(json, config);
  } catch (e) {
    throw new EntropruneError('EP_TOKENIZER', `${file}: not a usable tokenizer.json: ${(e as Error).message}`, file);
  }
  const vocab = impl.get_vocab(true);
  let maxId = -1;
  for (const id of vocab.values()) maxId = Math.max(maxId, id);
  const tokenId = (t: unknown): number | undefined => {
    const s = typeof t === 'string' ? t : (t as { content?: string } | undefined)?.content;
    return s === undefined ? undefined : impl.token_to_id(s);
  };
  return new JsonTokenizer(file, impl, maxId + 1, tokenId(config.bos_token) ?? bosFallback, tokenId(config.eos_token) ?? eosFallback);
}

export function loadLlama2cTokenizer(file: string): Tokenizer {
  try {
    return new SpmTokenizer('llama2c', file, new (native().NativeSpmTokenizer)(file));
  } catch (e) {
    throw fromNative(e);
  }
}

/** A tokenizer given explicitly: tokenizer.json (or a directory holding one) or a llama2.c tok*.bin. */
export function loadTokenizerFile(file: string): Tokenizer {
  if (checkInput(file, 'tokenizer file', 'file or folder', 'EP_TOKENIZER').isDirectory()) return loadTokenizerFile(path.join(file, 'tokenizer.json'));
  if (file.endsWith('.json')) return loadTokenizerJson(file);
  return loadLlama2cTokenizer(file);
}

/** llama2.c checkpoints keep their vocabulary beside them as tok<vocab>.bin or tokenizer.bin. */
export function llama2cVocabFile(info: { path: string; vocab: number }): string | undefined {
  const dir = path.dirname(info.path);
  for (const name of [`tok${info.vocab}.bin`, 'tokenizer.bin']) if (fs.existsSync(path.join(dir, name))) return path.join(dir, name);
  return undefined;
}

/** The tokenizer that belongs to `model`, or the one given, checked against the model's vocabulary. */
export function tokenizerFor(model: Model, explicit?: string): Tokenizer {
  const info = model.info;
  let tok: Tokenizer | undefined;
  if (explicit) {
    tok = loadTokenizerFile(explicit);
  } else if (info.format === 'hf') {
    const file = path.join(info.path, 'tokenizer.json');
    if (fs.existsSync(file)) tok = loadTokenizerJson(file, info.bos, info.eos);
  } else if (info.format === 'gguf') {
    const v = model.handle.embeddedVocab();
    if (v) tok = new SpmTokenizer('gguf', info.path, v);
  } else {
    const file = llama2cVocabFile(info);
    if (file) tok = loadLlama2cTokenizer(file);
  }
  if (!tok) {
    const where =
      info.format === 'hf'
        ? `no tokenizer.json in ${info.path}`
        : info.format === 'gguf'
          ? 'the GGUF file embeds no SentencePiece (llama) vocabulary'
          : `no tok${info.vocab}.bin or tokenizer.bin beside the checkpoint`;
    throw new EntropruneError('EP_TOKENIZER', `${info.path}: missing tokenizer (${where}); pass one with --tokenizer <tokenizer.json | tok.bin>`, info.path);
  }
  if (tok.vocabSize > info.vocab) {
    throw new EntropruneError(
      'EP_TOKENIZER',
      `${tok.source}: the tokenizer has ${tok.vocabSize} tokens but the model ${info.path} has a vocabulary of ${info.vocab}: they do not belong together`,
      tok.source,
    );
  }
  // Fewer tokens than the model's rows: a SentencePiece vocabulary (tok*.bin, GGUF) lists every row, so it
  // must match exactly; a tokenizer.json may leave padding rows unnamed, but not a large share of them.
  const exact = !(tok.source.endsWith('.json'));
  if (exact ? tok.vocabSize !== info.vocab : tok.vocabSize < 0.9 * info.vocab) {
    throw new EntropruneError(
      'EP_TOKENIZER',
      `${tok.source}: the tokenizer has ${tok.vocabSize} tokens but the model ${info.path} has a vocabulary of ${info.vocab}${exact ? '' : ' (more than 10 % of the rows unnamed)'}: truncated, or from another model`,
      tok.source,
    );
  }
  return tok;
}
