#include "core/apply/save_hf.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/format/output_file.h"
#include "core/format/rope_layout.h"

namespace ep {

namespace {

std::string hf_name(const std::string& c) {
  if (c == "tok_embd") return "model.embed_tokens.weight";
  if (c == "output_norm") return "model.norm.weight";
  if (c == "output") return "lm_head.weight";
  // blk.N.kind[.bias]
  const size_t a = c.find('.', 4);
  const std::string n = c.substr(4, a - 4), rest = c.substr(a + 1);
  const bool bias = rest.size() > 5 && rest.compare(rest.size() - 5, 5, ".bias") == 0;
  const std::string kind = bias ? rest.substr(0, rest.size() - 5) : rest;
  static const std::map<std::string, std::string> parts = {
      {"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"}, {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"}};
  return "model.layers." + n + "." + parts.at(kind) + (bias ? ".bias" : ".weight");
}

struct Entry {
  std::string name;
  std::vector<int64_t> shape;
  std::function<void(float*)> fill;
  uint64_t bytes;
};

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return;
  std::ofstream out(to, std::ios::binary);
  out << in.rdbuf();
  if (!out) throw Error(ErrorCode::kIo, to, "cannot write");
}

// What the Nemotron-NAS (DeciLM) config can say: every layer that keeps attention keeps all query heads
// (one global count, head_dim = hidden / heads) with any KV grouping; every MLP width is a multiple of 256;
// a removed sublayer is a no-op with no weights. Returns the global head count; refuses anything else.
// A float32 setting as its source wrote it: the shortest decimal that reads back as the same float32
// (1e-06, not 9.999999974752427e-07 as a widened double prints), for config.json.
double as_written(float f) {
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof(buf), "%.*g", digits, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) break;
  }
  return std::strtod(buf, nullptr);
}

int check_nas_expressible(const PrunedModel& pm, const std::string& dir) {
  const ModelConfig& c = pm.config;
  auto refuse = [&](const std::string& why) {
    throw Error(ErrorCode::kUnsupported, dir,
                "this plan gives blocks different shapes, and the Nemotron-NAS (DeciLMForCausalLM) layout cannot hold it: " + why +
                    ". Plan with --align 256 --align-heads <query heads> (whole attention layers, MLP widths in multiples of 256), "
                    "with --uniform for a stock LlamaForCausalLM, or write GGUF (llama.cpp's deci architecture)");
  };
  const int heads = c.dim / c.head_dim;
  if (heads * c.head_dim != c.dim) refuse("head_dim × heads must equal hidden_size");
  for (int l = 0; l < c.n_layers(); ++l) {
    const LayerShape& s = c.layers[l];
    const std::string b = "block " + std::to_string(l);
    if (s.n_head != 0 && s.n_head != heads) refuse(b + " keeps " + std::to_string(s.n_head) + " of " + std::to_string(heads) + " query heads");
    if (s.ffn % 256 != 0) refuse(b + " has MLP width " + std::to_string(s.ffn) + ", not a multiple of 256");
    for (const PrunedTensor& t : pm.tensors) {
      const std::string p = "blk." + std::to_string(l) + ".";
      if (t.name.rfind(p, 0) != 0) continue;
      const bool attn = t.name.find(".attn_") != std::string::npos, ffn = t.name.find(".ffn_") != std::string::npos;
      if ((attn && s.n_head == 0) || (ffn && s.ffn == 0)) refuse(b + " keeps " + t.name + " for a removed sublayer");
    }
  }
  return heads;
}

}  // namespace

void save_hf(const PrunedModel& pm, const Model& source, const std::string& dir, const HfSaveOptions& o) {
  const ModelConfig& c = pm.config;
  const int L = c.n_layers();
  bool uniform = true;
  for (const LayerShape& s : c.layers)
    uniform = uniform && s.n_head == c.layers[0].n_head && s.n_kv_head == c.layers[0].n_kv_head && s.ffn == c.layers[0].ffn && s.n_head > 0 && s.ffn > 0;
  // Heterogeneous plans go to the Nemotron-NAS layout when it can hold them (see check_nas_expressible).
  const int nas_heads = uniform ? 0 : check_nas_expressible(pm, dir);
  const int64_t d = c.dim, hd = c.head_dim;
  bool attn_bias = false, mlp_bias = false, qkv_bias = false;
  for (const LayerShape& s : c.layers) {
    attn_bias |= s.attn_out_bias || s.attn_qkv_bias;
    qkv_bias |= s.attn_qkv_bias;
    mlp_bias |= s.ffn_down_bias;
  }
  std::vector<Entry> entries;
  const size_t esz = dtype_size(o.dtype);
  auto push = [&](const std::string& name, const std::vector<int64_t>& shape, std::function<void(float*)> fill) {
    uint64_t n = 1;
    for (int64_t x : shape) n *= x;
    entries.push_back({name, shape, std::move(fill), n * esz});
  };
  std::map<std::string, bool> present;
  const bool permute = c.rope_layout == RopeLayout::kInterleaved;
  for (const PrunedTensor& t : pm.tensors) {
    auto fill = t.fill;
    const bool qk = t.name.find(".attn_q") != std::string::npos || t.name.find(".attn_k") != std::string::npos;
    if (permute && qk) fill = to_half(fill, t.shape[0], t.shape.size() == 2 ? t.shape[1] : 1, static_cast<int>(hd));
    push(hf_name(t.name), t.shape, fill);
    present[t.name] = true;
  }
  auto zeros = [](int64_t n) { return [n](float* x) { std::memset(x, 0, n * sizeof(float)); }; };
  for (int l = 0; l < L; ++l) {  // Llama's attention_bias / mlp_bias switch on every bias of the kind
    const LayerShape& s = c.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    if (attn_bias && s.n_head > 0) {
      if (!present[b + "attn_q.bias"]) push(hf_name(b + "attn_q.bias"), {s.n_head * hd}, zeros(s.n_head * hd));
      if (!present[b + "attn_k.bias"]) push(hf_name(b + "attn_k.bias"), {s.n_kv_head * hd}, zeros(s.n_kv_head * hd));
      if (!present[b + "attn_v.bias"]) push(hf_name(b + "attn_v.bias"), {s.n_kv_head * hd}, zeros(s.n_kv_head * hd));
      if (!present[b + "attn_output.bias"]) push(hf_name(b + "attn_output.bias"), {d}, zeros(d));
    }
    if (mlp_bias && s.ffn > 0) {
      push(hf_name(b + "ffn_gate.bias"), {s.ffn}, zeros(s.ffn));
      push(hf_name(b + "ffn_up.bias"), {s.ffn}, zeros(s.ffn));
      if (!present[b + "ffn_down.bias"]) push(hf_name(b + "ffn_down.bias"), {d}, zeros(d));
    }
  }
  // ---- shards
  std::vector<std::vector<size_t>> shards(1);
  uint64_t cur = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (cur > 0 && cur + entries[i].bytes > o.shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(i);
    cur += entries[i].bytes;
  }
  const char* dtname = o.dtype == DType::F32 ? "F32" : o.dtype == DType::F16 ? "F16" : "BF16";
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t k = 0; k < shards.size(); ++k) {
    char fname[64];
    if (shards.size() == 1) std::snprintf(fname, sizeof(fname), "model.safetensors");
    else std::snprintf(fname, sizeof(fname), "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
    nlohmann::json header = nlohmann::json::object();
    header["__metadata__"] = {{"format", "pt"}, {"producer", "entroprune"}};
    uint64_t off = 0;
    for (size_t i : shards[k]) {
      header[entries[i].name] = {{"dtype", dtname}, {"shape", entries[i].shape}, {"data_offsets", {off, off + entries[i].bytes}}};
      off += entries[i].bytes;
      weight_map[entries[i].name] = fname;
    }
    std::string hs = header.dump();
    hs.append((8 - hs.size() % 8) % 8, ' ');
    const std::string path = dir + "/" + fname;
    OutputFile f(path);
    const uint64_t n = hs.size();
    f.write(&n, 8);
    f.write(hs.data(), hs.size());
    std::vector<float> buf;
    std::vector<uint16_t> half;
    for (size_t i : shards[k]) {
      const Entry& e = entries[i];
      buf.assign(e.bytes / esz, 0.0f);
      e.fill(buf.data());
      const void* src = buf.data();
      if (o.dtype != DType::F32) {
        half.resize(buf.size());
        for (size_t j = 0; j < buf.size(); ++j) half[j] = o.dtype == DType::F16 ? f32_to_f16(buf[j]) : f32_to_bf16(buf[j]);
        src = half.data();
      }
      f.write(src, e.bytes);
    }
    f.close();
  }
  if (shards.size() > 1) {
    std::ofstream idx(dir + "/model.safetensors.index.json");
    idx << nlohmann::json({{"metadata", {{"producer", "entroprune"}}}, {"weight_map", weight_map}}).dump(2);
    if (!idx) throw Error(ErrorCode::kIo, dir + "/model.safetensors.index.json", "cannot write");
  }
  // ---- config.json: a stock LlamaForCausalLM
  nlohmann::json cfg = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", d}, {"intermediate_size", c.layers[0].ffn},
      {"num_hidden_layers", L}, {"num_attention_heads", c.layers[0].n_head}, {"num_key_value_heads", c.layers[0].n_kv_head},
      {"head_dim", hd}, {"vocab_size", c.vocab}, {"rms_norm_eps", as_written(c.norm_eps)}, {"rope_theta", as_written(c.rope_theta)},
      {"max_position_embeddings", c.context > 0 ? c.context : 2048}, {"tie_word_embeddings", c.tied_output}, {"bos_token_id", c.bos},
      {"eos_token_id", c.eos}, {"hidden_act", "silu"}, {"attention_bias", attn_bias}, {"mlp_bias", mlp_bias},
      {"torch_dtype", o.dtype == DType::F32 ? "float32" : o.dtype == DType::F16 ? "float16" : "bfloat16"}};
  if (nas_heads > 0) {
    // Nemotron-NAS: one global query-head count, per-layer KV grouping and MLP multiplier, no-op sublayers.
    cfg["architectures"] = {"DeciLMForCausalLM"};
    cfg["model_type"] = "nemotron-nas";
    cfg["num_attention_heads"] = nas_heads;
    cfg.erase("num_key_value_heads");
    cfg.erase("intermediate_size");
    nlohmann::json blocks = nlohmann::json::array();
    for (const LayerShape& s : c.layers) {
      nlohmann::json a = {{"no_op", s.n_head == 0}, {"replace_with_linear", false}, {"n_heads_in_group", nullptr}};
      if (s.n_head > 0) a["n_heads_in_group"] = s.n_head / s.n_kv_head;
      nlohmann::json f = {{"no_op", s.ffn == 0}, {"replace_with_linear", false}, {"ffn_mult", nullptr}};
      if (s.ffn > 0) f["ffn_mult"] = 1.5 * s.ffn / static_cast<double>(d);  // int(2·mult·d/3) = width (± rounding), a multiple of 256
      blocks.push_back({{"attention", a}, {"ffn", f}});
    }
    cfg["block_configs"] = blocks;
  }
  if (c.rope_scaling == "linear") cfg["rope_scaling"] = {{"rope_type", "linear"}, {"factor", as_written(c.rope_linear_factor)}};
  if (c.rope_scaling == "llama3") {
    // Carry the source's Llama-3 rope scaling block verbatim when it came from a Hugging Face config.
    std::ifstream in(source.path + "/config.json");
    if (in) {
      try {
        nlohmann::json src = nlohmann::json::parse(in);
        if (src.contains("rope_scaling")) cfg["rope_scaling"] = src["rope_scaling"];
      } catch (...) {
      }
    }
  }
  std::ofstream cf(dir + "/config.json");
  cf << cfg.dump(2) << "\n";
  if (!cf) throw Error(ErrorCode::kIo, dir + "/config.json", "cannot write");
  if (source.format == "hf")
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model"})
      copy_file(source.path + "/" + f, dir + "/" + f);
}

}  // namespace ep
