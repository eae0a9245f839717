// Test fixtures shared by the apply, least-squares, plan-loss and scoring tests: a small random-weight model written
// to a scratch folder and loaded back, the plan that keeps every unit of a model (each test then cuts from it), and
// random calibration means.
#pragma once
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/apply/apply.h"
#include "core/load/model.h"
#include "core/synthetic/synthetic_model.h"
#include "test_util.h"

namespace ep::test {

// `layers` blocks of `shape` (n_head, n_kv_head, ffn; no biases), written as GGUF under t and loaded.
inline std::unique_ptr<Model> small_synthetic_model(const TempDir& t, int dim, int vocab, int head_dim, int layers, int n_head, int n_kv_head,
                                                    int ffn, uint64_t seed, const std::string& name = "base.gguf") {
  SyntheticSpec spec;
  spec.config.dim = dim;
  spec.config.vocab = vocab;
  spec.config.head_dim = head_dim;
  spec.config.layers.assign(layers, LayerShape{n_head, n_kv_head, ffn, false, false, false});
  spec.seed = seed;
  write_synthetic_gguf(spec, t.file(name));
  return load_model(t.file(name));
}

// Every KV head, query head and channel kept, compensation on.
inline std::vector<PlanBlock> keep_everything_plan(const Model& m) {
  std::vector<PlanBlock> p;
  for (const LayerShape& s : m.config.layers) {
    PlanBlock b;
    for (int g = 0; g < s.n_kv_head; ++g) b.kept_kv.push_back(g);
    for (int h = 0; h < s.n_head; ++h) b.kept_heads.push_back(h);
    for (int j = 0; j < s.ffn; ++j) b.kept_channels.push_back(j);
    p.push_back(b);
  }
  return p;
}

// Random calibration means for every block (normal, σ 0.3; the same seed gives the same means): what
// compensation folds in, for tests that check where it lands rather than what it is.
inline std::vector<BlockMeans> random_means(const Model& m, int seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> n(0, 0.3);
  std::vector<BlockMeans> out;
  for (const LayerShape& s : m.config.layers) {
    BlockMeans b;
    for (int i = 0; i < s.n_head * m.config.head_dim; ++i) b.head_mean.push_back(n(g));
    for (int i = 0; i < s.ffn; ++i) b.channel_mean.push_back(n(g));
    for (int i = 0; i < m.config.dim; ++i) { b.attn_out_mean.push_back(n(g)); b.mlp_out_mean.push_back(n(g)); }
    out.push_back(b);
  }
  return out;
}

}  // namespace ep::test
