// Span scoring against an independent computation: each sequence run alone, full logits, a float64
// log-softmax and argmax written out here. Mixed lengths share padded batches, so agreement also shows
// that right padding leaves every sequence's scores unchanged.
#include <cmath>
#include <random>

#include "core/error.h"
#include "core/forward/forward.h"
#include "core/load/model.h"
#include "core/evaluate/score.h"
#include "core/synthetic/synthetic_model.h"
#include "forward_util.h"
#include "synthetic_util.h"
#include "test_util.h"

using namespace ep;

namespace {

std::unique_ptr<Model> small_model(const test::TempDir& t) { return test::small_synthetic_model(t, 32, 97, 8, 3, 4, 2, 40, 5, "m.gguf"); }

// log p(tokens[t] | tokens[..t-1]) for every t >= 1, and the argmax after each prefix, from full logits.
void reference(const Model& m, const std::vector<int32_t>& seq, std::vector<double>& logp, std::vector<int>& best) {
  const int V = m.config.vocab, T = static_cast<int>(seq.size());
  const std::vector<float> lg = test::full_logits(m, seq);
  logp.assign(T, 0);
  best.assign(T, -1);
  for (int t = 1; t < T; ++t) {
    const float* row = &lg[static_cast<size_t>(t - 1) * V];
    double mx = row[0];
    int arg = 0;
    for (int v = 1; v < V; ++v)
      if (row[v] > mx) mx = row[v], arg = v;
    double z = 0;
    for (int v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v]) - mx);
    logp[t] = row[seq[t]] - mx - std::log(z);
    best[t] = arg;
  }
}

}  // namespace

TEST(Score, MixedLengthBatchesMatchEachSequenceAlone) {
  test::TempDir t;
  auto m = small_model(t);
  std::mt19937 g(3);
  std::uniform_int_distribution<int> tok(0, m->config.vocab - 1), len(2, 23);
  std::vector<int32_t> all;
  std::vector<ScoreSpan> spans;
  for (int i = 0; i < 17; ++i) {
    ScoreSpan s;
    s.begin = static_cast<int64_t>(all.size());
    s.length = len(g);
    s.target = 1 + static_cast<int>(g() % (s.length - 1));
    for (int j = 0; j < s.length; ++j) all.push_back(tok(g));
    spans.push_back(s);
  }
  ScoreOptions o;
  o.batch_tokens = 50;  // several batches, each with several padded sequences
  int64_t calls = 0, last = 0;
  o.on_progress = [&](int64_t done, int64_t total) { ++calls, last = done; EXPECT_EQ(total, 17); };
  const auto got = score_spans(*m, all.data(), spans, o);
  EXPECT_GT(calls, 2);
  EXPECT_EQ(last, 17);
  for (size_t i = 0; i < spans.size(); ++i) {
    std::vector<int32_t> seq(all.begin() + spans[i].begin, all.begin() + spans[i].begin + spans[i].length);
    std::vector<double> logp;
    std::vector<int> best;
    reference(*m, seq, logp, best);
    double want = 0;
    bool greedy = true;
    for (int t = spans[i].target; t < spans[i].length; ++t) want += logp[t], greedy = greedy && best[t] == seq[t];
    EXPECT_NEAR(got[i].logprob, want, 1e-4 * (1 + std::fabs(want))) << "span " << i;
    EXPECT_EQ(got[i].greedy, greedy) << "span " << i;
  }
}

TEST(Score, GreedyIsTrueExactlyForTheModelsOwnContinuation) {
  test::TempDir t;
  auto m = small_model(t);
  // Grow a sequence greedily from a prompt, then score its generated tail: greedy must be true. Changing
  // one generated token to something else makes it false and lowers the log-likelihood.
  std::vector<int32_t> seq = {1, 17, 42};
  for (int step = 0; step < 6; ++step) {
    std::vector<double> logp;
    std::vector<int> best;
    seq.push_back(0);
    reference(*m, seq, logp, best);
    seq.back() = best.back();
  }
  std::vector<int32_t> both = seq;
  std::vector<int32_t> edited = seq;
  edited[5] = (edited[5] + 1) % m->config.vocab;
  both.insert(both.end(), edited.begin(), edited.end());
  const int n = static_cast<int>(seq.size());
  std::vector<ScoreSpan> spans = {{0, n, 3}, {n, n, 3}};
  const auto got = score_spans(*m, both.data(), spans);
  EXPECT_TRUE(got[0].greedy);
  EXPECT_FALSE(got[1].greedy);
  EXPECT_GT(got[0].logprob, got[1].logprob);
}

TEST(Score, RejectsMalformedSpans) {
  test::TempDir t;
  auto m = small_model(t);
  std::vector<int32_t> toks = {1, 2, 3};
  EXPECT_THROW(score_spans(*m, toks.data(), {{0, 3, 0}}), Error);
  EXPECT_THROW(score_spans(*m, toks.data(), {{0, 3, 3}}), Error);
  EXPECT_THROW(score_spans(*m, toks.data(), {{0, 1, 1}}), Error);
}
