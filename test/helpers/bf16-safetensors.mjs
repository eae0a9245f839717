// A float32 safetensors file rewritten with every tensor as BF16 (the upper half of each float32): the
// same model in the dtype most checkpoints ship in, for tests of conversion at load and layer streaming.
// Plain JavaScript so that both the vitest suites and test/bad-inputs/make-corpus.mjs can import it.
import * as fs from 'node:fs';

export function writeBf16Safetensors(src, dst) {
  const st = fs.readFileSync(src);
  const n = Number(st.readBigUInt64LE(0));
  const header = JSON.parse(st.toString('utf8', 8, 8 + n));
  const data = st.subarray(8 + n);
  const parts = [];
  let off = 0;
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const from = data.subarray(e.data_offsets[0], e.data_offsets[1]);
    const to = Buffer.alloc(from.length / 2);
    for (let i = 0; i < to.length / 2; i++) to.writeUInt16LE(from.readUInt16LE(4 * i + 2), 2 * i);
    e.dtype = 'BF16';
    e.data_offsets = [off, off + to.length];
    off += to.length;
    parts.push(to);
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(dst, Buffer.concat([len, json, ...parts]));
}
