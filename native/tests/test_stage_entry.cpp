// The stages' entry points (measure_model, evaluate_windows, write_pruned_model) against the calls they wrap:
// the same numbers and files as the drivers and writers used directly, and their own choices (block-major
// when asked, the format dispatch, cancellation) observable.
#include <atomic>
#include <cmath>

#include "core/apply/save_gguf.h"
#include "core/apply/write_pruned.h"
#include "core/error.h"
#include "core/evaluate/evaluate.h"
#include "core/forward/forward.h"
#include "core/measure/measure.h"
#include "heterogeneous_model.h"
#include "test_util.h"

using namespace ep;

namespace {

std::vector<int32_t> tokens(int n) {
  std::vector<int32_t> t(n);
  uint32_t s = 7;
  for (int& x : t) { s = s * 1664525u + 1013904223u; x = static_cast<int>((s >> 8) % 300); }
  return t;
}

std::vector<PlanBlock> keep_half(const ModelConfig& c) {
  std::vector<PlanBlock> plan(c.n_layers());
  for (int l = 0; l < c.n_layers(); ++l) {
    const LayerShape& s = c.layers[l];
    for (int g = 0; g < s.n_kv_head; ++g) plan[l].kept_kv.push_back(g);
    for (int h = 0; h < s.n_head; ++h) plan[l].kept_heads.push_back(h);
    for (int j = 0; j < s.ffn; j += 2) plan[l].kept_channels.push_back(j);
    plan[l].compensate = false;
  }
  return plan;
}

}  // namespace

TEST(StageEntry, MeasureModelIsTheSameInBothOrders) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 5));
  const std::vector<int32_t> toks = tokens(6 * 16);
  MeasureRequest r;
  r.windows = {toks.data(), 6, 16, 2};
  const MeasureResult batch_major = measure_model(*m, r, nullptr, nullptr);
  r.streamed = true;
  const MeasureResult block_major = measure_model(*m, r, nullptr, nullptr);
  ASSERT_EQ(batch_major.analysis.blocks.size(), block_major.analysis.blocks.size());
  for (size_t l = 0; l < batch_major.analysis.blocks.size(); ++l) {
    EXPECT_EQ(batch_major.analysis.blocks[l].te, block_major.analysis.blocks[l].te) << l;
    EXPECT_EQ(batch_major.analysis.blocks[l].channel_entropy, block_major.analysis.blocks[l].channel_entropy) << l;
  }
  EXPECT_EQ(block_major.run.device, "cpu");
  EXPECT_GT(block_major.run.forward_seconds, 0.0);  // the streamed driver ran (its report is filled)
  EXPECT_EQ(batch_major.run.forward_seconds, 0.0);  // the batch-major one did not
}

TEST(StageEntry, EvaluateWindowsEqualsTheForwardPass) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 6));
  const int n = 3, T = 12;
  const std::vector<int32_t> toks = tokens(n * T);
  EvaluateRequest e;
  e.windows = {toks.data(), n, T, 2};
  std::vector<float> nll(n * (T - 1)), ref(n * (T - 1));
  const EvaluationReport rep = evaluate_windows(*m, e, nll.data(), nullptr, nullptr);
  EXPECT_EQ(rep.device, "cpu");
  ForwardRequest f;
  f.tokens = toks.data();
  f.n_seqs = n;
  f.seq_len = T;
  f.nll = ref.data();
  forward(*m, f);
  for (size_t i = 0; i < nll.size(); ++i) EXPECT_NEAR(nll[i], ref[i], 1e-6f) << i;
  e.logits = true;
  std::vector<float> logits(static_cast<size_t>(n) * T * m->config.vocab);
  evaluate_windows(*m, e, logits.data(), nullptr, nullptr);
  EXPECT_TRUE(std::isfinite(logits.back()));
}

TEST(StageEntry, WritePrunedModelDispatchesCountsAndCancels) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 8));
  const std::vector<PlanBlock> plan = keep_half(m->config);
  WriteRequest w;
  w.output = t.file("a.gguf");
  int64_t last = 0, total = 0;
  const WriteResult r = write_pruned_model(*m, plan, {}, w, nullptr, [&](int64_t done, int64_t all) { last = done; total = all; });
  EXPECT_EQ(r.layers, m->config.n_layers());
  EXPECT_EQ(last, r.tensors);
  EXPECT_EQ(total, r.tensors);
  // the same file as prune_model + save_gguf used directly
  save_gguf(prune_model(*m, plan, {}), *m, t.file("b.gguf"), {});
  EXPECT_EQ(test::read_all(t.file("a.gguf")), test::read_all(t.file("b.gguf")));
  auto back = load_model(t.file("a.gguf"));
  EXPECT_EQ(back->config.layers[0].ffn, (m->config.layers[0].ffn + 1) / 2);
  w.format = "onnx";
  EXPECT_THROW(write_pruned_model(*m, plan, {}, w, nullptr, nullptr), Error);
  std::atomic<bool> cancel{true};
  w.format = "gguf";
  w.output = t.file("c.gguf");
  EXPECT_THROW(write_pruned_model(*m, plan, {}, w, &cancel, nullptr), Error);
}

TEST(StageEntry, LoadingReportsBlocksAndStopsWhenCancelled) {
  test::TempDir t;
  const std::string file = test::write_heterogeneous_model(t.file("m.gguf"), 4);
  LoadOptions o;
  std::vector<int64_t> seen;
  o.progress = [&](int64_t done, int64_t total) {
    seen.push_back(done);
    EXPECT_EQ(total, 4);
  };
  auto m = load_model(file, o);
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3, 4}));
  // cancelled after the first block: the next check throws, nothing is returned
  std::atomic<bool> cancel{false};
  o.cancel = &cancel;
  o.progress = [&](int64_t done, int64_t) {
    if (done == 1) cancel = true;
  };
  EXPECT_THROW(load_model(file, o), Error);
}
