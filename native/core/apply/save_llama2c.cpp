#include "core/apply/save_llama2c.h"

#include <cmath>
#include <map>

#include "core/error.h"
#include "core/format/output_file.h"
#include "core/format/rope_layout.h"

namespace ep {

void save_llama2c(const PrunedModel& pm, const std::string& path) {
  const ModelConfig& c = pm.config;
  const int L = c.n_layers(), d = c.dim, hd = c.head_dim;
  auto refuse = [&](const std::string& why) {
    throw Error(ErrorCode::kUnsupported, path,
                "a llama2.c checkpoint cannot hold this plan: " + why +
                    " (llama2.c keeps every query head, one MLP width and no biases: plan with --granularity width-only --uniform "
                    "--no-compensation, or whole-block removal, or write GGUF)");
  };
  if (L == 0) refuse("no blocks are left");
  const LayerShape& s0 = c.layers[0];
  for (int l = 0; l < L; ++l) {
    const LayerShape& s = c.layers[l];
    if (s.n_head * hd != d) refuse("block " + std::to_string(l) + " keeps " + std::to_string(s.n_head) + " query heads, but q must stay dim × dim");
    if (s.n_kv_head != s0.n_kv_head) refuse("blocks keep different numbers of KV heads");
    if (s.ffn == 0 || s.ffn != s0.ffn) refuse("block " + std::to_string(l) + " has MLP width " + std::to_string(s.ffn) + ", block 0 " + std::to_string(s0.ffn));
    if (s.attn_qkv_bias || s.attn_out_bias || s.ffn_down_bias) refuse("block " + std::to_string(l) + " carries a bias (bias compensation)");
  }
  std::map<std::string, const PrunedTensor*> byName;
  for (const PrunedTensor& t : pm.tensors) byName[t.name] = &t;
  auto tensor = [&](const std::string& name) -> const PrunedTensor& {
    auto it = byName.find(name);
    if (it == byName.end()) throw Error(ErrorCode::kInvalidArgument, path, "pruned model lacks tensor " + name);
    return *it->second;
  };
  const int seq_len = c.context > 0 ? c.context : 2048;
  OutputFile f(path);
  const int32_t header[7] = {d, s0.ffn, L, s0.n_head, s0.n_kv_head, c.tied_output ? c.vocab : -c.vocab, seq_len};
  f.write(header, sizeof(header));
  std::vector<float> buf;
  auto put = [&](const PrunedTensor& t, bool rope_rows) {
    int64_t n = 1;
    for (int64_t x : t.shape) n *= x;
    buf.assign(static_cast<size_t>(n), 0.0f);
    auto fill = t.fill;
    // llama2.c rotates interleaved pairs; weights that came from a Hugging Face model are in rotate_half order.
    if (rope_rows && c.rope_layout == RopeLayout::kHalf) fill = to_interleaved(fill, t.shape[0], t.shape[1], hd);
    fill(buf.data());
    f.write(buf.data(), buf.size() * sizeof(float));
  };
  auto per_layer = [&](const char* kind, bool rope_rows = false) {
    for (int l = 0; l < L; ++l) put(tensor("blk." + std::to_string(l) + "." + kind), rope_rows);
  };
  put(tensor("tok_embd"), false);
  per_layer("attn_norm");
  per_layer("attn_q", true);
  per_layer("attn_k", true);
  per_layer("attn_v");
  per_layer("attn_output");
  per_layer("ffn_norm");
  per_layer("ffn_gate");
  per_layer("ffn_down");
  per_layer("ffn_up");
  put(tensor("output_norm"), false);
  // freq_cis_real / freq_cis_imag [seq_len, head_size/2]: run.c ignores them, older readers use them.
  std::vector<float> re(static_cast<size_t>(seq_len) * (hd / 2)), im(re.size());
  for (int p = 0; p < seq_len; ++p)
    for (int i = 0; i < hd / 2; ++i) {
      const double a = p * std::pow(static_cast<double>(c.rope_theta), -2.0 * i / hd);
      re[static_cast<size_t>(p) * (hd / 2) + i] = static_cast<float>(std::cos(a));
      im[static_cast<size_t>(p) * (hd / 2) + i] = static_cast<float>(std::sin(a));
    }
  f.write(re.data(), re.size() * sizeof(float));
  f.write(im.data(), im.size() * sizeof(float));
  if (!c.tied_output) put(tensor("output"), false);
  f.close();
}

}  // namespace ep
