// Hugging Face directories: config.json + model.safetensors, or shards listed in model.safetensors.index.json.
// LLaMA-2/3, Vicuna and Mistral-style GQA (LlamaForCausalLM / MistralForCausalLM).
#include <sys/stat.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <stdexcept>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/load/model.h"
#include "core/format/safetensors_file.h"

namespace ep {

namespace {

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kIo, path, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const std::exception& e) {
    fail_format(path, std::string("not valid JSON: ") + e.what());
  }
}

// HF parameter name -> canonical (GGUF-style) name; empty for tensors the engine does not use.
std::string canonical_name(const std::string& hf) {
  static const std::regex layer(R"(^model\.layers\.(\d+)\.(.+)\.(weight|bias)$)");
  static const std::map<std::string, std::string> parts = {
      {"input_layernorm", "attn_norm"},     {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},       {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
      {"mlp.gate_proj", "ffn_gate"},        {"mlp.up_proj", "ffn_up"},      {"mlp.down_proj", "ffn_down"}};
  if (hf == "model.embed_tokens.weight") return "tok_embd";
  if (hf == "model.norm.weight") return "output_norm";
  if (hf == "lm_head.weight") return "output";
  std::smatch mt;
  if (std::regex_match(hf, mt, layer)) {
    auto it = parts.find(mt[2].str());
    if (it == parts.end()) return "";
    return "blk." + mt[1].str() + "." + it->second + (mt[3].str() == "bias" ? ".bias" : "");
  }
  return "";
}

// A config value of the wrong kind or out of range (a float where an int belongs, 1e60 heads): reported as a
// format error naming the field. nlohmann's own get<int>() would cast such a double silently (undefined
// behaviour when it does not fit; found by fuzz_safetensors).
struct ConfigValueError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T>
T as(const nlohmann::json& v, const char* key) {
  if constexpr (std::is_same_v<T, int>) {
    if (!v.is_number_integer()) throw ConfigValueError(std::string("field '") + key + "' must be an integer");
    if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(INT32_MAX) : (v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX))
      throw ConfigValueError(std::string("field '") + key + "' is out of range");
    return static_cast<int>(v.get<int64_t>());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) throw ConfigValueError(std::string("field '") + key + "' must be a number");
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::fabs(d) > static_cast<double>(std::numeric_limits<T>::max()))
      throw ConfigValueError(std::string("field '") + key + "' is out of range");
    return static_cast<T>(d);
  } else {
    return v.get<T>();
  }
}

template <typename T>
T get_or(const nlohmann::json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return as<T>(*it, key);
}

template <typename T>
T need(const nlohmann::json& j, const char* key) {
  return as<T>(j.at(key), key);
}

// Nemotron-NAS (DeciLMForCausalLM) per-layer shapes: attention {n_heads_in_group, no_op}, ffn {ffn_mult,
// no_op}. The query-head count is global; KV heads = heads / n_heads_in_group; the MLP width is
// ffn_mult · 2·hidden/3 rounded up to a multiple of 256, computed in the same double operations as the
// reference Python (int(2 * ffn_mult * hidden / 3), then the next multiple of 256).
void read_block_configs(const nlohmann::json& blocks, ModelConfig& c, int n_heads, const std::string& where) {
  if (!blocks.is_array() || blocks.size() != c.layers.size())
    fail_format(where, "block_configs must list one entry per layer (" + std::to_string(c.layers.size()) + ")");
  for (size_t l = 0; l < blocks.size(); ++l) {
    const nlohmann::json& a = blocks[l].at("attention");
    const nlohmann::json& f = blocks[l].at("ffn");
    const std::string at = "block_configs[" + std::to_string(l) + "]";
    if (get_or<bool>(a, "replace_with_linear", false) || get_or<bool>(f, "replace_with_linear", false))
      throw Error(ErrorCode::kUnsupported, where, at + ": replace_with_linear layers are not supported");
    LayerShape& s = c.layers[l];
    if (get_or<bool>(a, "no_op", false)) {
      s.n_head = s.n_kv_head = 0;
      s.attn_qkv_bias = s.attn_out_bias = false;  // a no-op sublayer has no weights at all
    } else {
      const int g = need<int>(a, "n_heads_in_group");
      if (g <= 0 || n_heads % g != 0) fail_format(where, at + ".attention.n_heads_in_group " + std::to_string(g) + " does not divide " + std::to_string(n_heads));
      s.n_head = n_heads;
      s.n_kv_head = n_heads / g;
    }
    if (get_or<bool>(f, "no_op", false)) {
      s.ffn = 0;
    } else {
      const double mult = need<double>(f, "ffn_mult");
      if (!(mult > 0 && mult < 1e6)) fail_format(where, at + ".ffn.ffn_mult " + std::to_string(mult) + " is out of range");
      const int64_t raw = static_cast<int64_t>(2.0 * mult * c.dim / 3.0);
      s.ffn = static_cast<int>((raw + 255) / 256 * 256);
      if (s.ffn <= 0) fail_format(where, at + ".ffn.ffn_mult gives no MLP width");
    }
  }
}

}  // namespace

std::unique_ptr<Model> load_hf(const std::string& dir, const LoadOptions& options) {
  const std::string config_path = dir + "/config.json";
  if (!file_exists(config_path)) throw Error(ErrorCode::kIo, dir, "not a Hugging Face model directory: config.json is missing");
  nlohmann::json cj = read_json(config_path);
  auto m = std::make_unique<Model>();
  m->path = dir;
  m->format = "hf";
  ModelConfig& c = m->config;
  try {
    const std::string type = get_or<std::string>(cj, "model_type", "llama");
    const bool nas = cj.contains("block_configs");
    if (type != "llama" && type != "mistral" && !(nas && (type == "nemotron-nas" || type == "deci")))
      throw Error(ErrorCode::kUnsupported, config_path, "model_type '" + type + "' is not supported (llama, mistral, or nemotron-nas with block_configs)");
    c.arch = "llama";
    c.dim = need<int>(cj, "hidden_size");
    c.vocab = need<int>(cj, "vocab_size");
    const int n_layers = need<int>(cj, "num_hidden_layers");
    const int n_heads = need<int>(cj, "num_attention_heads");
    const int n_kv = get_or<int>(cj, "num_key_value_heads", n_heads);
    const int ffn = nas ? 0 : need<int>(cj, "intermediate_size");
    if (n_layers <= 0 || n_layers > 4096 || n_heads <= 0)
      fail_format(config_path, "num_hidden_layers and num_attention_heads must be positive");
    // A stock Llama config has an MLP in every layer: intermediate_size 0 would skip every MLP's weights.
    if (!nas && ffn <= 0) fail_format(config_path, "intermediate_size must be positive (got " + std::to_string(ffn) + ")");
    if (n_kv <= 0) fail_format(config_path, "num_key_value_heads must be positive (got " + std::to_string(n_kv) + ")");
    c.head_dim = get_or<int>(cj, "head_dim", c.dim / n_heads);
    c.norm_eps = get_or<float>(cj, "rms_norm_eps", 1e-6f);
    c.rope_theta = get_or<float>(cj, "rope_theta", 10000.0f);
    c.context = get_or<int>(cj, "max_position_embeddings", 0);
    c.sliding_window = get_or<int>(cj, "sliding_window", 0);
    c.tied_output = get_or<bool>(cj, "tie_word_embeddings", false);
    c.rope_layout = RopeLayout::kHalf;
    c.bos = get_or<int>(cj, "bos_token_id", 1);
    if (cj.contains("eos_token_id") && cj["eos_token_id"].is_number_integer()) c.eos = as<int>(cj["eos_token_id"], "eos_token_id");
    else if (cj.contains("eos_token_id") && cj["eos_token_id"].is_array() && !cj["eos_token_id"].empty()) c.eos = as<int>(cj["eos_token_id"][0], "eos_token_id");
    const bool attn_bias = get_or<bool>(cj, "attention_bias", false);
    c.layers.assign(n_layers, LayerShape{n_heads, n_kv, ffn, attn_bias, attn_bias, false});
    if (nas) read_block_configs(cj["block_configs"], c, n_heads, config_path);
    if (cj.contains("rope_scaling") && cj["rope_scaling"].is_object()) {
      const nlohmann::json& rs = cj["rope_scaling"];
      const std::string rt = get_or<std::string>(rs, "rope_type", get_or<std::string>(rs, "type", "default"));
      if (rt == "llama3") {
        c.set_llama3_rope_scaling(need<float>(rs, "factor"), get_or<float>(rs, "low_freq_factor", 1.0f),
                                  get_or<float>(rs, "high_freq_factor", 4.0f),
                                  get_or<int>(rs, "original_max_position_embeddings", 8192));
      } else if (rt == "linear") {
        c.rope_scaling = "linear";
        c.rope_linear_factor = need<float>(rs, "factor");
      } else if (rt != "default") {
        throw Error(ErrorCode::kUnsupported, config_path, "rope_scaling type '" + rt + "' is not supported (llama3, linear)");
      }
    }
  } catch (const nlohmann::json::exception& e) {
    fail_format(config_path, std::string("missing or mistyped field: ") + e.what());
  } catch (const ConfigValueError& e) {
    fail_format(config_path, e.what());
  }
  c.validate(config_path);

  // Weight files: one model.safetensors, or the shards of model.safetensors.index.json.
  std::vector<std::string> shard_files;
  const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  if (file_exists(index)) {
    nlohmann::json ij = read_json(index);
    if (!ij.contains("weight_map") || !ij["weight_map"].is_object()) fail_format(index, "no weight_map object");
    std::set<std::string> seen;
    for (auto it = ij["weight_map"].begin(); it != ij["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail_format(index, "weight_map entry '" + it.key() + "' is not a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos) fail_format(index, "shard name '" + shard + "' must be a plain file name");
      if (seen.insert(shard).second) {
        if (!file_exists(dir + "/" + shard)) throw Error(ErrorCode::kIo, dir + "/" + shard, "shard listed in model.safetensors.index.json is missing");
        shard_files.push_back(dir + "/" + shard);
      }
    }
  } else if (file_exists(single)) {
    shard_files.push_back(single);
  } else if (file_exists(dir + "/pytorch_model.bin")) {
    throw Error(ErrorCode::kUnsupported, dir, "only safetensors weights are supported (found pytorch_model.bin)");
  } else {
    throw Error(ErrorCode::kIo, dir, "no model.safetensors or model.safetensors.index.json");
  }
  for (const std::string& shard : shard_files) {
    SafetensorsFile sf = read_safetensors(shard);
    for (auto& [name, e] : sf.tensors) {
      const std::string canon = canonical_name(name);
      if (canon.empty()) continue;  // e.g. rotary inv_freq buffers
      if (!e.supported)
        throw Error(ErrorCode::kUnsupported, shard, "tensor '" + name + "' has dtype " + e.dtype_name + "; only F32, F16 and BF16 are supported");
      if (m->tensors.count(canon)) fail_format(shard, "tensor '" + name + "' appears twice");
      TensorRef r;
      r.name = canon;
      r.stored_name = name;
      r.file = sf.file;
      r.offset = e.offset;
      r.dtype = e.dtype;
      r.shape = e.shape;
      m->tensors.emplace(canon, std::move(r));
    }
  }
  // Some exports store the head but no separate embedding (or vice versa) and mark the model tied.
  if (!m->tensors.count("tok_embd") && m->tensors.count("output")) c.tied_output = true;
  if (c.tied_output && m->tensors.count("tok_embd") && m->tensors.count("output")) m->tensors.erase("output");
  // The engine has no gate/up biases: accept them only when they are all zero (as entroprune writes them for
  // Llama's mlp_bias switch), refuse real ones by name.
  for (const char* kind : {"ffn_gate.bias", "ffn_up.bias"})
    for (int l = 0; l < c.n_layers(); ++l) {
      auto it = m->tensors.find("blk." + std::to_string(l) + "." + kind);
      if (it == m->tensors.end()) continue;
      const TensorRef& t = it->second;
      std::vector<float> v(t.numel());
      convert_to_f32(t.dtype, t.file->range(t.offset, t.numel() * dtype_size(t.dtype), t.stored_name), v.data(), v.size());
      for (float x : v)
        if (x != 0.0f) throw Error(ErrorCode::kUnsupported, t.file->path(), "tensor '" + t.stored_name + "' is a non-zero gate/up bias, which is not supported");
    }
  for (int l = 0; l < c.n_layers(); ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    c.layers[l].attn_out_bias = m->tensors.count(b + "attn_output.bias") > 0;
    c.layers[l].attn_qkv_bias = m->tensors.count(b + "attn_q.bias") > 0;
    c.layers[l].ffn_down_bias = m->tensors.count(b + "ffn_down.bias") > 0;
  }
  m->bind_weights(options);
  return m;
}

}  // namespace ep
