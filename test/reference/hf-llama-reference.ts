// An independent LLaMA forward pass for tests, written the way Hugging Face's modeling_llama.py reads:
// float64 throughout, safetensors parsed here (not by the engine), rotate_half RoPE with cos/sin over the
// full head, repeat_kv for GQA, a full causal softmax. Slow and simple on purpose: it is the yardstick.
import * as fs from 'node:fs';
import * as path from 'node:path';

interface Tensor {
  shape: number[];
  data: Float64Array;
}

function readSafetensors(file: string): Map<string, Tensor> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, Tensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const start = 8 + n + e.data_offsets[0];
    const count = e.shape.reduce((a, b) => a * b, 1);
    const data = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      if (e.dtype === 'F32') data[i] = buf.readFloatLE(start + 4 * i);
      else if (e.dtype === 'BF16') data[i] = new Float32Array(new Uint32Array([buf.readUInt16LE(start + 2 * i) << 16]).buffer)[0];
      else throw new Error(`reference: dtype ${e.dtype} not handled`);
    }
    out.set(name, { shape: e.shape, data });
  }
  return out;
}

export class HfLlamaReference {
  private readonly w: Map<string, Tensor>;
  readonly cfg: {
    hidden_size: number;
    intermediate_size: number;
    num_hidden_layers: number;
    num_attention_heads: number;
    num_key_value_heads: number;
    vocab_size: number;
    rms_norm_eps: number;
    rope_theta?: number;
    rope_scaling?: { rope_type?: string; type?: string; factor: number; low_freq_factor?: number; high_freq_factor?: number; original_max_position_embeddings: number } | null;
  };

  constructor(dir: string) {
    this.cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    this.w = readSafetensors(path.join(dir, 'model.safetensors'));
  }

  private t(name: string): Tensor {
    const t = this.w.get(name) ?? (name === 'model.embed_tokens.weight' ? this.w.get('lm_head.weight') : undefined);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  }

  // x: [T][in] -> [T][out] with W [out, in]
  private linear(x: Float64Array[], name: string): Float64Array[] {
    const W = this.t(name);
    const [out, inp] = W.shape;
    return x.map((row) => {
      const y = new Float64Array(out);
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let i = 0; i < inp; i++) s += W.data[o * inp + i] * row[i];
        y[o] = s;
      }
      return y;
    });
  }

  private norm(x: Float64Array[], name: string): Float64Array[] {
    const w = this.t(name).data;
    return x.map((row) => {
      let ss = 0;
      for (const v of row) ss += v * v;
      const k = 1 / Math.sqrt(ss / row.length + this.cfg.rms_norm_eps);
      return row.map((v, i) => v * k * w[i]);
    });
  }

  /** Logits [T][vocab] of one sequence. */
  logits(tokens: number[]): Float64Array[] {
    const c = this.cfg;
    const d = c.hidden_size;
    const nh = c.num_attention_heads;
    const nkv = c.num_key_value_heads;
    const hd = d / nh;
    const theta = c.rope_theta ?? 10000;
    const emb = this.t('model.embed_tokens.weight').data;
    let h = tokens.map((id) => emb.slice(id * d, (id + 1) * d));
    const T = tokens.length;
    // cos/sin [T][hd]: emb = cat(freqs, freqs)
    let invFreq = Array.from({ length: hd / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / hd));
    const rs = c.rope_scaling;
    if (rs && (rs.rope_type ?? rs.type) === 'llama3') {
      // Llama 3.1's rule as Hugging Face transformers states it: wavelengths beyond original/low_freq_factor
      // are stretched by `factor`, those below original/high_freq_factor kept, a linear blend in between.
      const low = rs.low_freq_factor ?? 1;
      const high = rs.high_freq_factor ?? 4;
      const orig = rs.original_max_position_embeddings;
      invFreq = invFreq.map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < orig / high) return f;
        if (wavelen > orig / low) return f / rs.factor;
        const smooth = (orig / wavelen - low) / (high - low);
        return ((1 - smooth) * f) / rs.factor + smooth * f;
      });
    }
    const rope = (v: Float64Array, heads: number, pos: number) => {
      const out = new Float64Array(v.length);
      for (let hh = 0; hh < heads; hh++) {
        for (let j = 0; j < hd; j++) {
          const f = invFreq[j % (hd / 2)] * pos;
          const x = v[hh * hd + j];
          const rot = j < hd / 2 ? -v[hh * hd + j + hd / 2] : v[hh * hd + j - hd / 2]; // rotate_half
          out[hh * hd + j] = x * Math.cos(f) + rot * Math.sin(f);
        }
      }
      return out;
    };
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      const xn = this.norm(h, p + 'input_layernorm.weight');
      const q = this.linear(xn, p + 'self_attn.q_proj.weight').map((v, t) => rope(v, nh, t));
      const k = this.linear(xn, p + 'self_attn.k_proj.weight').map((v, t) => rope(v, nkv, t));
      const v = this.linear(xn, p + 'self_attn.v_proj.weight');
      const att = q.map(() => new Float64Array(nh * hd));
      for (let hh = 0; hh < nh; hh++) {
        const g = Math.floor(hh / (nh / nkv)); // repeat_kv
        for (let i = 0; i < T; i++) {
          const scores: number[] = [];
          for (let j = 0; j <= i; j++) {
            let s = 0;
            for (let e = 0; e < hd; e++) s += q[i][hh * hd + e] * k[j][g * hd + e];
            scores.push(s / Math.sqrt(hd));
          }
          const mx = Math.max(...scores);
          const ex = scores.map((s) => Math.exp(s - mx));
          const z = ex.reduce((a, b) => a + b, 0);
          for (let j = 0; j <= i; j++) for (let e = 0; e < hd; e++) att[i][hh * hd + e] += (ex[j] / z) * v[j][g * hd + e];
        }
      }
      const a = this.linear(att, p + 'self_attn.o_proj.weight');
      h = h.map((row, t) => row.map((x, i) => x + a[t][i]));
      const xn2 = this.norm(h, p + 'post_attention_layernorm.weight');
      const gate = this.linear(xn2, p + 'mlp.gate_proj.weight');
      const up = this.linear(xn2, p + 'mlp.up_proj.weight');
      const act = gate.map((gr, t) => gr.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[t][i]));
      const m = this.linear(act, p + 'mlp.down_proj.weight');
      h = h.map((row, t) => row.map((x, i) => x + m[t][i]));
    }
    const y = this.norm(h, 'model.norm.weight');
    return this.linear(y, this.w.has('lm_head.weight') ? 'lm_head.weight' : 'model.embed_tokens.weight');
  }
}
