// Hugging Face safetensors in every layout users have: BF16 / F16 dtypes and sharded checkpoints, built
// from the real TinyStories-656K weights, must give the logits of the F32 original.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadModel, Model } from '../lib';
import { dataFile, tempDir, TINY_HF } from './helpers/data';

const scratch = tempDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

type Header = Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;

function readSafetensors(file: string): { header: Header; data: Buffer } {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) };
}

function writeSafetensors(file: string, tensors: { name: string; dtype: string; shape: number[]; bytes: Buffer }[]) {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...tensors.map((t) => t.bytes)]));
}

function f32ToF16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  const mant = u & 0x7fffff;
  if (exp <= 0) return sign; // tiny weights flush to zero: fine for this closeness test
  if (exp >= 31) return sign | 0x7c00;
  let h = sign | (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return h;
}

function convert(src: Buffer, dtype: 'BF16' | 'F16'): Buffer {
  const n = src.length / 4;
  const out = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) {
    if (dtype === 'BF16') out.writeUInt16LE(src.readUInt32LE(4 * i) >>> 16, 2 * i); // exact: low 16 bits are zero in this model
    else out.writeUInt16LE(f32ToF16(src.readFloatLE(4 * i)), 2 * i);
  }
  return out;
}

function variant(name: string, build: (dir: string, header: Header, data: Buffer) => void): string {
  const src = dataFile(TINY_HF);
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  const { header, data } = readSafetensors(path.join(src, 'model.safetensors'));
  build(dir, header, data);
  return dir;
}

function tensorsOf(header: Header, data: Buffer) {
  return Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .map(([name, e]) => ({ name, dtype: e.dtype, shape: e.shape, bytes: data.subarray(e.data_offsets[0], e.data_offsets[1]) }));
}

async function logits(model: Model): Promise<Float32Array> {
  const tokens = Int32Array.from({ length: 64 }, (_, i) => (i * 37 + 1) % model.info.vocab);
  return model.handle.evaluate({ tokens, nSeqs: 1, seqLen: 64, output: 'logits' }).promise;
}

describe('Hugging Face layouts', () => {
  it('BF16 safetensors: converted once, bit-identical logits (the F32 original is a lossless BF16 up-cast)', async () => {
    const dir = variant('bf16', (d, h, data) =>
      writeSafetensors(path.join(d, 'model.safetensors'), tensorsOf(h, data).map((t) => ({ ...t, dtype: 'BF16', bytes: convert(t.bytes, 'BF16') }))),
    );
    const ref = await loadModel(dataFile(TINY_HF));
    const bf16 = await loadModel(dir);
    expect(ref.info.convertedBytes).toBe(0);
    expect(bf16.info.convertedBytes).toBeGreaterThan(0);
    expect(Array.from(await logits(bf16))).toEqual(Array.from(await logits(ref)));
  });

  it('F16 safetensors: close to the F32 logits', async () => {
    const dir = variant('f16', (d, h, data) =>
      writeSafetensors(path.join(d, 'model.safetensors'), tensorsOf(h, data).map((t) => ({ ...t, dtype: 'F16', bytes: convert(t.bytes, 'F16') }))),
    );
    const a = await logits(await loadModel(dataFile(TINY_HF)));
    const b = await logits(await loadModel(dir));
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    expect(maxDiff).toBeLessThan(5e-2);
    expect(maxDiff).toBeGreaterThan(0); // it really went through F16
  });

  it('sharded checkpoint with model.safetensors.index.json: identical logits; a missing shard is named', async () => {
    const dir = variant('sharded', (d, h, data) => {
      const all = tensorsOf(h, data);
      const half = Math.ceil(all.length / 2);
      const shards = [all.slice(0, half), all.slice(half)];
      const weightMap: Record<string, string> = {};
      shards.forEach((s, i) => {
        const name = `model-0000${i + 1}-of-00002.safetensors`;
        writeSafetensors(path.join(d, name), s);
        for (const t of s) weightMap[t.name] = name;
      });
      fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    });
    expect(Array.from(await logits(await loadModel(dir)))).toEqual(Array.from(await logits(await loadModel(dataFile(TINY_HF)))));
    fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
    await expect(loadModel(dir)).rejects.toThrow(/model-00002-of-00002\.safetensors.*missing/);
  });
});
