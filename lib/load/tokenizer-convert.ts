// tokenizer.json → a SentencePiece-style (GGUF "llama") vocabulary, so pruned Hugging Face models can be
// written as GGUF with their tokenizer embedded. Only the LLaMA family's layout converts exactly: a BPE model
// on "▁"-joined text (normalizer: prepend "▁", spaces → "▁"; or the Metaspace pre-tokenizer), no byte-level
// pre-tokenizer. Each merged token's score is minus its merge rank, so "merge the highest-scoring adjacent
// pair" (llama.cpp's and our SPM encoder) follows the merge order that BPE follows.
//
// The converted vocabulary is not trusted on faith: it must reproduce the tokenizer.json encoding (through
// @huggingface/tokenizers) of every single token's text and of a mixed sample; otherwise the conversion is
// refused with the first difference, and the user is told to write the Hugging Face format instead.
import { native, NativeSpmTokenizer } from '../native';
import { EntropruneError, fromNative } from '../util/errors';
import { readJsonFile } from '../util/json-file';
import type { Tokenizer } from './tokenizer';

const SPACE = '\u2581';

const SAMPLE = [
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.',
  'The quick brown fox jumps over the lazy dog; 1234567890 — "quotes", (brackets) & symbols: 50% off!',
  '  leading spaces, double  spaces and a trailing space \n new lines\n\nand tabs\tinside.',
  'Café naïve résumé — 東京 😀 Ünïcödé',
];

interface Normalizer {
  type?: string;
  prepend?: string;
  pattern?: { String?: string };
  content?: string;
  normalizers?: Normalizer[];
}

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] };
  normalizer?: Normalizer | null;
  pre_tokenizer?: { type?: string; replacement?: string } | null;
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

function isLlamaStyle(j: TokenizerJson): boolean {
  const norms = j.normalizer?.type === 'Sequence' ? j.normalizer.normalizers ?? [] : j.normalizer ? [j.normalizer] : [];
  const prepends = norms.some((n) => n.type === 'Prepend' && n.prepend === SPACE);
  const replaces = norms.some((n) => n.type === 'Replace' && n.pattern?.String === ' ' && n.content === SPACE);
  const metaspace = j.pre_tokenizer?.type === 'Metaspace' && (j.pre_tokenizer.replacement ?? SPACE) === SPACE;
  return j.model?.type === 'BPE' && ((prepends && replaces && !j.pre_tokenizer) || metaspace);
}

export function spmVocabFromTokenizerJson(file: string, reference: Tokenizer): NativeSpmTokenizer {
  const j = readJsonFile(file, 'tokenizer JSON', 'EP_TOKENIZER') as TokenizerJson;
  if (!isLlamaStyle(j))
    throw new EntropruneError(
      'EP_UNSUPPORTED',
      `${file}: this tokenizer (${j.model?.type ?? 'unknown'} model, ${j.pre_tokenizer?.type ?? 'no'} pre-tokenizer) has no SentencePiece equivalent: GGUF output needs one; write the Hugging Face format (--format hf) instead`,
      file,
    );
  const vocab = j.model!.vocab ?? {};
  const size = Math.max(-1, ...Object.values(vocab), ...(j.added_tokens ?? []).map((t) => t.id)) + 1;
  const pieces: string[] = new Array(size).fill('');
  const scores = new Float32Array(size).fill(-1e9); // pieces no merge produces are never merge candidates
  for (const [piece, id] of Object.entries(vocab)) pieces[id] = piece;
  for (const t of j.added_tokens ?? []) pieces[t.id] = t.content;
  for (let i = 0; i < size; i++) if ([...pieces[i]].length === 1) scores[i] = 0; // single characters: initial symbols
  (j.model!.merges ?? []).forEach((m, rank) => {
    const [a, b] = typeof m === 'string' ? m.split(' ') : m;
    const id = vocab[a + b];
    if (id !== undefined && scores[id] === -1e9) scores[id] = -rank;
  });
  for (let i = 0; i < size; i++) if (pieces[i] === '') pieces[i] = `<unused${i}>`;
  let spm: NativeSpmTokenizer;
  try {
    spm = new (native().NativeSpmTokenizer)({ pieces, scores, bos: reference.bos, eos: reference.eos, source: file });
  } catch (e) {
    throw fromNative(e);
  }
  checkSameEncoding(file, spm, reference, pieces, (j.added_tokens ?? []).filter((t) => t.special).map((t) => t.content));
  return spm;
}

/** Texts containing a special token's string are left out: tokenizer.json splits those out of raw text and
 *  SentencePiece runtimes do not (llama.cpp only with parse_special), so they differ by design. */
function checkSameEncoding(file: string, spm: NativeSpmTokenizer, reference: Tokenizer, pieces: string[], specials: string[]): void {
  const texts = [...SAMPLE];
  // Every piece's own text (spaces restored; a literal "▁" in input text is not a space and is left out).
  for (let i = 0; i < pieces.length; i++) {
    const text = pieces[i].split(SPACE).join(' ').trimStart();
    if (!pieces[i].startsWith('<unused') && text.trim() !== '' && !specials.some((sp) => text.includes(sp))) texts.push(text);
  }
  for (const text of texts) {
    const want = reference.encode(text);
    const got = spm.encode(text, false);
    if (want.length !== got.length || want.some((v, k) => v !== got[k])) {
      const show = (ids: ArrayLike<number>) => Array.from(ids).slice(0, 24).join(' ');
      throw new EntropruneError(
        'EP_UNSUPPORTED',
        `${file}: the SentencePiece form of this tokenizer would encode ${JSON.stringify(text.slice(0, 60))} differently ` +
          `(tokenizer.json: ${show(want)}; converted: ${show(got)}), so a GGUF written with it would not behave like the original: write the Hugging Face format (--format hf) instead`,
        file,
      );
    }
  }
}
