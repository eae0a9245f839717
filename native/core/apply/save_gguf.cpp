#include "core/apply/save_gguf.h"

#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/format/gguf_file.h"
#include "core/format/gguf_llama_meta.h"
#include "core/format/rope_layout.h"

namespace ep {

namespace {
std::string gguf_name(const std::string& canonical) {
  if (canonical == "tok_embd") return "token_embd.weight";
  const std::string bias = ".bias";
  if (canonical.size() > bias.size() && canonical.compare(canonical.size() - bias.size(), bias.size(), bias) == 0) return canonical;
  return canonical + ".weight";
}

}  // namespace

void save_gguf(const PrunedModel& pm, const Model& source, const std::string& path, const GgufSaveOptions& o) {
  ModelConfig c = pm.config;
  const int L = c.n_layers();
  const int64_t d = c.dim, hd = c.head_dim;
  // ---- stubs for llama.cpp's deci traps
  std::vector<bool> stub_ffn(L, false), stub_attn(L, false);
  for (int l = 0; l < L; ++l) {
    LayerShape& s = c.layers[l];
    if (s.ffn == 0 && (s.n_head > 0 || l == L - 1)) { stub_ffn[l] = true; s.ffn = 1; }
    if (l == 0 && s.n_head == 0) { stub_attn[l] = true; s.n_head = 1; s.n_kv_head = 1; }
  }
  GgufWriter w;
  write_llama_hparams(w, c);
  w.set_string("general.name", o.name);
  w.set_u32("general.alignment", 32);
  std::unique_ptr<GgufFile> src;
  if (source.format == "gguf") src = std::make_unique<GgufFile>(read_gguf(source.path));
  if (src) {
    for (const auto& [k, v] : src->kv)
      if (k.rfind("tokenizer.", 0) == 0 || (k.rfind("general.", 0) == 0 && k != "general.architecture" && k != "general.name" && k != "general.alignment" &&
                                            k != "general.file_type"))
        w.copy_value(k, v);
  } else if (o.vocab) {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (int i = 0; i < o.vocab->size(); ++i) {
      std::string p = o.vocab->piece(i), out;
      for (char ch : p) out += ch == ' ' ? std::string("\xe2\x96\x81") : std::string(1, ch);
      const bool byte = p.size() == 6 && p.rfind("<0x", 0) == 0;
      tokens.push_back(out);
      scores.push_back(o.vocab->score(i));
      types.push_back(byte ? 6 : (i == 0 ? 2 : (i == o.vocab->bos() || i == o.vocab->eos()) ? 3 : 1));
    }
    write_spm_vocab(w, tokens, scores, types, o.vocab->bos(), o.vocab->eos());
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  } else {
    throw Error(ErrorCode::kUnsupported, source.path,
                "GGUF output needs the tokenizer in GGUF form: only GGUF and llama2.c (with tok*.bin) sources can be written as GGUF; use --format hf");
  }
  auto store = std::make_shared<std::vector<std::vector<float>>>();  // keeps rope_freqs alive until write()
  if (!c.rope_freq_factors.empty()) {
    store->push_back(c.rope_freq_factors);
    w.add_tensor("rope_freqs.weight", {static_cast<int64_t>(c.rope_freq_factors.size())}, DType::F32, store->back().data());
  }
  const bool permute = c.rope_layout == RopeLayout::kHalf;
  for (const PrunedTensor& t : pm.tensors) {
    const bool matrix = t.shape.size() == 2;
    auto fill = t.fill;
    const std::string kind = t.name.substr(t.name.find_last_of('.') + 1);
    if (permute && (t.name.find(".attn_q") != std::string::npos || t.name.find(".attn_k") != std::string::npos) && t.name.find("attn_kv") == std::string::npos) {
      const int64_t rows = t.shape[0], cols = matrix ? t.shape[1] : 1;
      fill = to_interleaved(fill, rows, cols, static_cast<int>(hd));
    }
    w.add_tensor_f32(gguf_name(t.name), t.shape, matrix ? o.dtype : DType::F32, fill);
    (void)kind;
  }
  // stub tensors
  for (int l = 0; l < L; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    auto zeros = [](float* dst, size_t n) { std::memset(dst, 0, n * sizeof(float)); };
    auto ones = [](float* dst, size_t n) { for (size_t i = 0; i < n; ++i) dst[i] = 1.0f; };
    if (stub_ffn[l]) {
      w.add_tensor_f32(p + "ffn_norm.weight", {d}, DType::F32, [=](float* x) { ones(x, d); });
      w.add_tensor_f32(p + "ffn_gate.weight", {1, d}, o.dtype, [=](float* x) { zeros(x, d); });
      w.add_tensor_f32(p + "ffn_up.weight", {1, d}, o.dtype, [=](float* x) { zeros(x, d); });
      w.add_tensor_f32(p + "ffn_down.weight", {d, 1}, o.dtype, [=](float* x) { zeros(x, d); });
    }
    if (stub_attn[l]) {
      w.add_tensor_f32(p + "attn_norm.weight", {d}, DType::F32, [=](float* x) { ones(x, d); });
      for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_v.weight"})
        w.add_tensor_f32(p + n, {hd, d}, o.dtype, [=](float* x) { zeros(x, hd * d); });
      w.add_tensor_f32(p + "attn_output.weight", {d, hd}, o.dtype, [=](float* x) { zeros(x, hd * d); });
    }
  }
  w.write(path);
}

}  // namespace ep
