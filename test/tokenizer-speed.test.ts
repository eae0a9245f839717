// tokenizer.json text is encoded off the main thread by Hugging Face's Rust tokenizer (the optional
// `tokenizers` package), with the same ids as the JavaScript tokenizer the sync path uses, and an abort
// rejects at once with the caller's reason. Timings are printed, not asserted (bench/tokenize.mjs compares
// them side by side).
import * as fs from 'node:fs';

import { afterEach, describe, expect, it } from 'vitest';

import { loadModel, loadTokenizerFile, tokenizerFor } from '../lib';
import { encodeOffThread, rustTokenizers } from '../lib/load/tokenize-off-thread';
import { dataFile, STORIES_GGUF, TINY_HF, TINYSTORIES_TEXT } from './helpers/data';

const text = () => fs.readFileSync(dataFile(TINYSTORIES_TEXT), 'utf8').slice(0, 200_000);
const tokenizer = () => loadTokenizerFile(dataFile(`${TINY_HF}/tokenizer.json`));

afterEach(() => {
  delete process.env.ENTROPRUNE_NO_RUST_TOKENIZER;
});

describe('tokenizer.json off the main thread', () => {
  it('the Rust tokenizer is installed here and gives the JavaScript tokenizer\'s ids on 200 kB of TinyStories', async () => {
    expect(rustTokenizers(), 'the optional dependency "tokenizers" should load on linux-x64').not.toBeNull();
    const t = tokenizer();
    const s = text();
    let t0 = performance.now();
    const js = t.encode(s, { bos: true });
    const jsMs = performance.now() - t0;
    t0 = performance.now();
    const rust = await encodeOffThread(t, s, { bos: true });
    const rustMs = performance.now() - t0;
    console.log(`200 kB of TinyStories: JavaScript ${jsMs.toFixed(0)} ms, Rust ${rustMs.toFixed(0)} ms, ${rust.length} ids`);
    expect(rust.length).toBeGreaterThan(40_000);
    expect(Array.from(rust)).toEqual(Array.from(js));
  });

  it('without it, the worker-thread fallback gives the same ids', async () => {
    process.env.ENTROPRUNE_NO_RUST_TOKENIZER = '1';
    expect(rustTokenizers()).toBeNull();
    const t = tokenizer();
    const s = text().slice(0, 80_000);
    expect(Array.from(await encodeOffThread(t, s))).toEqual(Array.from(t.encode(s)));
  });

  for (const path of ['Rust', 'worker'] as const) {
    it(`an abort during tokenization rejects at once with the caller's reason (${path})`, async () => {
      if (path === 'worker') process.env.ENTROPRUNE_NO_RUST_TOKENIZER = '1';
      const t = tokenizer();
      const s = text().repeat(10); // 2 MB: long enough that the abort lands during the work
      const controller = new AbortController();
      const reason = new Error('user pressed stop');
      const started = performance.now();
      const pending = encodeOffThread(t, s, {}, controller.signal);
      setTimeout(() => controller.abort(reason), 20);
      const err = await pending.then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string; cause?: unknown },
      );
      const ms = performance.now() - started - 20;
      console.log(`${path}: abort landed ${ms.toFixed(0)} ms after it was asked for`);
      expect(err, 'the encode should have been cancelled').toBeDefined();
      expect(err!.code).toBe('EP_CANCELLED');
      expect(err!.message).toMatch(/user pressed stop/);
      expect(err!.cause).toBe(reason);
      expect(ms).toBeLessThan(1000); // not waiting for the work to finish (2 MB takes seconds in JavaScript)
    });
  }
});

describe('SentencePiece (GGUF / llama2.c vocabularies) off the main thread', () => {
  it('a long text gets the in-place ids from a native job, and an abort lands at once with its reason', async () => {
    const model = await loadModel(dataFile(STORIES_GGUF));
    const t = tokenizerFor(model);
    const s = text();
    const inline = t.encode(s, { bos: true });
    let loopTurned = false;
    setImmediate(() => {
      loopTurned = true;
    });
    const off = await encodeOffThread(t, s, { bos: true });
    expect(loopTurned).toBe(true); // the event loop turned while it worked
    expect(Array.from(off)).toEqual(Array.from(inline));
    const controller = new AbortController();
    const reason = new Error('stop');
    const pending = encodeOffThread(t, s.repeat(20), {}, controller.signal);
    controller.abort(reason);
    await expect(pending).rejects.toMatchObject({ code: 'EP_CANCELLED', cause: reason });
  });
});
