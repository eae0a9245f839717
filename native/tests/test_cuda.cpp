// CUDA kernels against their CPU twins. Without a GPU (CI) only the probe is checked: it must report the
// reason cleanly instead of crashing; the agreement tests skip with that reason. Every block kernel has one
// row in the KernelTable at the end (one line per kernel and shape); the tests above check the composed
// paths (GEMM backends, the block runner, the fused capture, the streamed drivers).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <tuple>

#include "core/measure/analysis.h"
#include "core/measure/calibrate.h"
#include "core/evaluate/evaluate_streamed.h"
#include "core/evaluate/score.h"
#include "core/forward/forward.h"
#include "core/forward/layer_ops.h"
#include "core/capture/moments.h"
#include "core/forward/ops_cpu.h"
#include "core/forward/divergence.h"
#include "core/measure/sensitivity.h"
#include "core/apply/plan_loss.h"
#include "core/device/layer_input_passes.h"
#include "core/synthetic/synthetic_model.h"
#include "core/device/cuda_api.h"
#include "core/format/dtype.h"
#include "cuda/kernel_check.h"
#include "heterogeneous_model.h"
#include "test_util.h"

using namespace ep;

// On the GPU machine a missing GPU is a failure, not a skip.
#define SKIP_OR_FAIL_WITHOUT_GPU(err)                                              \
  do {                                                                             \
    const char* req = std::getenv("ENTROPRUNE_REQUIRE_GPU");                       \
    if (req && std::string(req) == "1") FAIL() << "GPU required but unusable: " << (err); \
    GTEST_SKIP() << "no GPU: " << (err);                                           \
  } while (0)

// What a GPU-against-CPU comparison records in one precision: each figure's relative difference from the CPU's
// (|want| floored at 1e-3), checked against the precision's tolerance, and the worst of them.
struct Agreement {
  cuda::Precision precision;
  double tol;
  double worst = 0;
  void within(double relative, const std::string& what) {
    worst = std::max(worst, relative);
    EXPECT_LE(relative, tol) << precision_name(precision) << " " << what;
  }
  void near(double got, double want, const std::string& what) {
    within(std::abs(got - want) / std::max(1e-3, std::abs(want)), what + ": " + std::to_string(got) + " vs " + std::to_string(want));
  }
};

// Runs `compute(devices)` on GPU 0 in f32 (agreement to f32_tol) and bf16 (5e-2), and `check(result, agreement)`
// against the CPU's figures; prints the worst difference per precision (scripts/gpu-check.sh records it). A GPU
// that cannot run skips the test, or fails it under ENTROPRUNE_REQUIRE_GPU=1. Call it last in a test: a skip
// returns from here.
template <class Compute, class Check>
void compare_on_gpu(const char* what, double f32_tol, const Compute& compute, const Check& check) {
  for (cuda::Precision p : {cuda::Precision::kF32, cuda::Precision::kBF16}) {
    RunDevices dev;
    dev.cuda_devices = {0};
    dev.precision = p;
    decltype(compute(dev)) got;
    try {
      got = compute(dev);
    } catch (const Error& e) {
      SKIP_OR_FAIL_WITHOUT_GPU(e.what());
    }
    Agreement agreement{p, p == cuda::Precision::kF32 ? f32_tol : 5e-2};
    check(got, agreement);
    std::printf("%s on the GPU (%s): worst relative difference from the CPU %.2e\n", what, precision_name(p), agreement.worst);
  }
}

TEST(Cuda, ProbeNeverCrashes) {
  cuda::Probe p = cuda::probe();
  std::printf("probe: %s; GEMM: %s\n", p.message.c_str(), cuda::gemm_backend_description().c_str());  // recorded by gpu-check.sh
  EXPECT_FALSE(p.message.empty());
  if (!p.available) EXPECT_NE(p.message.find("CPU"), std::string::npos) << p.message;
#ifdef ENTROPRUNE_WITH_CUDA
  EXPECT_TRUE(p.compiled);
#else
  EXPECT_FALSE(p.compiled);
#endif
}

TEST(Cuda, RmsnormMatchesCpuTwin) {
  const int rows = 300, dim = 1000;
  std::mt19937 g(3);
  std::normal_distribution<float> n(0, 3);
  std::vector<float> x(rows * dim), w(dim), ycpu(rows * dim), ygpu(rows * dim);
  for (float& v : x) v = n(g);
  for (float& v : w) v = 1 + 0.1f * n(g);
  rmsnorm_cpu(x.data(), w.data(), ycpu.data(), rows, dim, 1e-5f);
  std::string err;
  if (!cuda::rmsnorm(x.data(), w.data(), ygpu.data(), rows, dim, 1e-5f, &err)) {
    EXPECT_FALSE(err.empty());
    SKIP_OR_FAIL_WITHOUT_GPU(err);
  }
  for (int i = 0; i < rows * dim; ++i) ASSERT_NEAR(ygpu[i], ycpu[i], 1e-5 * std::max(1.0f, std::abs(ycpu[i])));
}


TEST(Cuda, MomentAccumulationMatchesCpuTwin) {
  const int n = 777, k = 70;  // k not a multiple of the 32-wide tile
  std::mt19937 g(5);
  std::normal_distribution<float> dist(3, 2);
  std::vector<float> x(static_cast<size_t>(n) * k);
  for (float& v : x) v = dist(g);
  Moments cpu(k);
  cpu.add(x.data(), n, k);  // shift = mean of this first batch
  std::vector<double> sum(k, 0.0), cross(static_cast<size_t>(k) * k, 0.0);
  std::string err;
  if (!cuda::accumulate_moments(x.data(), n, k, cpu.shift().data(), sum.data(), cross.data(), &err)) {
    EXPECT_FALSE(err.empty());
    SKIP_OR_FAIL_WITHOUT_GPU(err);
  }
  for (int i = 0; i < k; ++i) {
    ASSERT_NEAR(sum[i], cpu.shifted_sum()[i], 1e-9);
    for (int j = i; j < k; ++j) ASSERT_NEAR(cross[i * k + j], cpu.shifted_cross()[i * k + j], 1e-9 * n);
  }
}

// ---- The CUDA forward pass (cuda/block_runner.h, gemm.cu, block_kernels.cu) against the CPU's.

namespace {

// Relative rounding of each compute precision (its unit roundoff, with margin for accumulated products).
double precision_tolerance(cuda::Precision p) {
  switch (p) {
    case cuda::Precision::kF32: return 2e-6;
    case cuda::Precision::kBF16: return 1.6e-2;
    case cuda::Precision::kF16: return 2e-3;
  }
  return 0;
}

std::vector<cuda::GemmBackend> backends_to_test() {
  std::vector<cuda::GemmBackend> b{cuda::GemmBackend::kOwnKernels};
  if (cuda::gemm_backend_description().rfind("cuBLAS", 0) == 0) b.push_back(cuda::GemmBackend::kCublas);
  return b;
}

std::vector<int32_t> some_tokens(int n, int vocab, uint32_t seed) {
  std::vector<int32_t> t(n);
  for (int32_t& x : t) { seed = seed * 1664525u + 1013904223u; x = static_cast<int32_t>((seed >> 8) % vocab); }
  return t;
}

// Every block on the GPU (or the CPU when runner is null), then the CPU's final norm and output: logits [N, vocab].
std::vector<float> logits_through_blocks(const Model& m, const std::vector<int32_t>& toks, int n_seqs, int T, cuda::BlockRunner* runner) {
  const ModelConfig& c = m.config;
  const int64_t N = static_cast<int64_t>(n_seqs) * T;
  std::vector<float> x(N * c.dim), xn(N * c.dim), logits(N * c.vocab);
  RopeTables rope;
  rope_tables(c, 0, T, rope.cos, rope.sin);
  ForwardScratch scratch(c, N);
  embed_tokens(m, toks.data(), N, x.data());
  for (int l = 0; l < c.n_layers(); ++l) {
    LayerBuffers buffers;
    const LayerWeights w = m.layer_weights(l, buffers);
    if (runner) {
      runner->load_block(l, w);
      runner->run(x.data(), n_seqs, nullptr);
    } else {
      forward_block(c, l, w, x.data(), n_seqs, T, rope, scratch, nullptr, nullptr);
    }
  }
  rmsnorm_cpu(x.data(), m.output_norm, xn.data(), N, c.dim, c.norm_eps);
  linear(xn.data(), m.output, nullptr, logits.data(), N, c.dim, c.vocab);
  return logits;
}

std::unique_ptr<cuda::BlockRunner> make_runner(const Model& m, int T, int64_t rows, cuda::Precision p, cuda::GemmBackend g, std::string* why) {
  RopeTables rope;
  rope_tables(m.config, 0, T, rope.cos, rope.sin);
  try {
    return cuda::BlockRunner::create(m.config, rope, T, rows, {0, p, g});
  } catch (const Error& e) {
    *why = e.what();
    return nullptr;
  }
}

// Logits of the GPU blocks against the CPU's: float32 agrees to rounding; 16-bit precisions keep the
// greedy prediction almost everywhere and stay within a small fraction of the logits' spread.
void expect_logits_agree(const Model& m, int n_seqs, int T, cuda::Precision p, cuda::GemmBackend g) {
  const auto toks = some_tokens(n_seqs * T, m.config.vocab, 11);
  std::string why;
  auto runner = make_runner(m, T, static_cast<int64_t>(n_seqs) * T, p, g, &why);
  if (!runner) SKIP_OR_FAIL_WITHOUT_GPU(why);
  const auto cpu = logits_through_blocks(m, toks, n_seqs, T, nullptr);
  const auto gpu = logits_through_blocks(m, toks, n_seqs, T, runner.get());
  const int V = m.config.vocab;
  const int64_t N = static_cast<int64_t>(n_seqs) * T;
  double sq = 0, max_diff = 0;
  int64_t same_argmax = 0;
  for (int64_t r = 0; r < N; ++r) {
    const float* a = &cpu[r * V];
    const float* b = &gpu[r * V];
    same_argmax += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
    for (int v = 0; v < V; ++v) {
      sq += static_cast<double>(a[v]) * a[v];
      max_diff = std::max(max_diff, static_cast<double>(std::abs(a[v] - b[v])));
    }
  }
  const double rms = std::sqrt(sq / (N * V));
  SCOPED_TRACE(runner->description());
  if (p == cuda::Precision::kF32) {
    // rounding only: a near-tie may flip a greedy pick, a wrong kernel flips most of them
    EXPECT_LT(max_diff, 1e-4 * rms * std::sqrt(static_cast<double>(m.config.dim))) << "rms " << rms;
    EXPECT_GE(static_cast<double>(same_argmax) / N, 0.99);
  } else {
    EXPECT_LT(max_diff, 0.25 * rms) << "rms " << rms;
    EXPECT_GE(static_cast<double>(same_argmax) / N, 0.8);
  }
  std::printf("%s: max |Δlogit| %.3g (rms %.3g), same greedy token %.1f%%\n", runner->description().c_str(), max_diff, rms,
              100.0 * same_argmax / N);  // recorded by gpu-check.sh
}

}  // namespace

TEST(Cuda, LinearMatchesCpuTwinInEveryPrecisionAndBackend) {
  const int rows = 37, in = 70, out = 45;  // no dimension a multiple of the 16/64-wide tiles
  std::mt19937 g(8);
  std::normal_distribution<float> n(0, 1);
  std::vector<float> x(rows * in), w(out * in), b(out), ref(rows * out), y(rows * out);
  for (float& v : x) v = n(g);
  for (float& v : w) v = n(g);
  for (float& v : b) v = n(g);
  linear(x.data(), w.data(), b.data(), ref.data(), rows, in, out);
  for (auto backend : backends_to_test())
    for (auto p : {cuda::Precision::kF32, cuda::Precision::kBF16, cuda::Precision::kF16}) {
      std::string err;
      if (!cuda::linear(x.data(), w.data(), b.data(), y.data(), rows, in, out, p, backend, &err)) SKIP_OR_FAIL_WITHOUT_GPU(err);
      for (int r = 0; r < rows; ++r)
        for (int o = 0; o < out; ++o) {
          double mag = std::abs(b[o]);  // Σ|x·w|: the scale of the rounding of this dot product
          for (int k = 0; k < in; ++k) mag += std::abs(x[r * in + k] * w[o * in + k]);
          ASSERT_NEAR(y[r * out + o], ref[r * out + o], 2 * precision_tolerance(p) * mag)
              << cuda::precision_name(p) << " backend " << static_cast<int>(backend) << " at " << r << "," << o;
        }
    }
}

TEST(Cuda, BlockRunnerMatchesCpuOnHeterogeneousModel) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 5));  // GQA, biases, attention-free and MLP-free blocks
  for (auto backend : backends_to_test())
    for (auto p : {cuda::Precision::kF32, cuda::Precision::kBF16, cuda::Precision::kF16}) expect_logits_agree(*m, 3, 40, p, backend);
}

TEST(Cuda, SlidingWindowAttentionMatchesCpu) {
  test::TempDir t;
  SyntheticSpec spec;
  spec.config.dim = 64;
  spec.config.vocab = 200;
  spec.config.head_dim = 16;
  spec.config.sliding_window = 7;
  spec.config.layers = {{4, 2, 96, false, false, false}, {4, 2, 96, false, false, false}};
  write_synthetic_gguf(spec, t.file("w.gguf"));
  auto m = load_model(t.file("w.gguf"));
  expect_logits_agree(*m, 2, 50, cuda::Precision::kF32, cuda::GemmBackend::kAuto);
}

TEST(Cuda, RealModelsLogitsMatchCpu) {
  REQUIRE_DATA("models/stories260K/stories260K.gguf");
  REQUIRE_DATA("models/tinystories-656K/model.safetensors");
  for (const char* rel : {"models/stories260K/stories260K.gguf", "models/tinystories-656K"}) {
    SCOPED_TRACE(rel);
    auto m = load_model(test::data_dir() + "/" + rel);
    expect_logits_agree(*m, 4, 128, cuda::Precision::kF32, cuda::GemmBackend::kAuto);
    expect_logits_agree(*m, 4, 128, cuda::Precision::kBF16, cuda::GemmBackend::kAuto);
  }
}

// The measure stage on the GPU: every statistic the planner reads agrees with the CPU's.
TEST(Cuda, StreamedCalibrationOnGpuMatchesCpu) {
  REQUIRE_DATA("models/stories260K/stories260K.gguf");
  auto m = load_model(test::data_dir() + "/models/stories260K/stories260K.gguf");
  const int n_seqs = 6, T = 64;
  const auto toks = some_tokens(n_seqs * T, m->config.vocab, 3);
  const TokenBatches in{toks.data(), n_seqs, T, 4};
  StatisticsCapture cpu(m->config, {}), gpu(m->config, {});
  RunDevices dev;
  dev.cuda_devices = {0};
  dev.precision = cuda::Precision::kF32;
  CalibrationReport report;
  try {
    report = calibrate_streamed(*m, in, gpu, nullptr, nullptr, dev);
  } catch (const Error& e) {
    SKIP_OR_FAIL_WITHOUT_GPU(e.what());
  }
  calibrate_streamed(*m, in, cpu, nullptr, nullptr);
  EXPECT_NE(report.device, "cpu");
  EXPECT_GT(report.peak_device_bytes, 0u);
  const AnalysisResult a = analyze_capture(cpu, m->config, 1e-6), b = analyze_capture(gpu, m->config, 1e-6);
  ASSERT_EQ(a.blocks.size(), b.blocks.size());
  auto close = [](double x, double y) { return std::abs(x - y) <= 1e-3 * std::max(1.0, std::abs(x)); };
  for (size_t l = 0; l < a.blocks.size(); ++l) {
    const BlockAnalysis &p = a.blocks[l], &q = b.blocks[l];
    EXPECT_TRUE(close(p.te, q.te)) << l << ": " << p.te << " vs " << q.te;
    EXPECT_TRUE(close(p.te_attn, q.te_attn)) << l;
    EXPECT_TRUE(close(p.te_mlp, q.te_mlp)) << l;
    EXPECT_TRUE(close(p.cosine, q.cosine)) << l;
    for (size_t h = 0; h < p.head_entropy.size(); ++h) EXPECT_TRUE(close(p.head_entropy[h], q.head_entropy[h])) << l << "/" << h;
    for (size_t j = 0; j < p.channel_entropy.size(); ++j) EXPECT_TRUE(close(p.channel_entropy[j], q.channel_entropy[j])) << l << "/" << j;
  }
}

// The measured sensitivities on the GPU (block-major on the runner, KL and loss by the device kernels)
// against the CPU driver, on stories260K with mean compensation and partial cuts: f32 products reproduce the
// CPU's figures (1e-4 relative), bf16's agree within 5e-2.
TEST(Cuda, SensitivityOnGpuMatchesCpu) {
  REQUIRE_DATA("models/stories260K/stories260K.gguf");
  auto m = load_model(test::data_dir() + "/models/stories260K/stories260K.gguf");
  const ModelConfig& c = m->config;
  const int n_seqs = 4, T = 64, L = c.n_layers();
  const auto toks = some_tokens(n_seqs * T, c.vocab, 5);
  SublayerMeans means;
  PartialCuts cuts;
  for (int l = 0; l < L; ++l) {
    means.attn_out.emplace_back(c.dim, 0.01f * l);
    means.mlp_out.emplace_back(c.dim, -0.01f * l);
    PartialCut a, f;
    a.units = {0};
    a.means.assign(c.head_dim, 0.05f);
    for (int j = 0; j < c.layers[l].ffn; j += 3) f.units.push_back(j);
    f.means.assign(f.units.size(), 0.02f);
    cuts.attn.push_back(a);
    cuts.mlp.push_back(f);
  }
  const auto none = [](int64_t, int64_t) {};
  const RemovalDamage cpu = measure_removal_damage(*m, toks.data(), n_seqs, T, means, nullptr, none, &cuts);
  compare_on_gpu(
      "sensitivity", 1e-4, [&](const RunDevices& dev) { return measure_removal_damage(*m, toks.data(), n_seqs, T, means, nullptr, none, &cuts, dev); },
      [&](const RemovalDamage& gpu, Agreement& a) {
        auto per_block = [&](const std::vector<double>& g, const std::vector<double>& want, const std::string& what) {
          for (int l = 0; l < L; ++l) a.near(g[l], want[l], what + " block " + std::to_string(l));
        };
        per_block(gpu.kl.attn, cpu.kl.attn, "kl attn");
        per_block(gpu.kl.mlp, cpu.kl.mlp, "kl mlp");
        per_block(gpu.kl.block, cpu.kl.block, "kl block");
        per_block(gpu.partial_kl.attn, cpu.partial_kl.attn, "partial kl attn");
        per_block(gpu.partial_kl.mlp, cpu.partial_kl.mlp, "partial kl mlp");
        per_block(gpu.nll.block, cpu.nll.block, "nll block");
        a.near(gpu.base_nll, cpu.base_nll, "base nll");
      });
}

TEST(Cuda, PlanLossOnGpuMatchesCpu) {
  // A plan with every kind of cut on stories260K, each partly cut layer restored alone: the GPU's block-major
  // driver against the CPU reference (f32: to rounding; bf16: within its precision).
  REQUIRE_DATA("models/stories260K/stories260K.gguf");
  auto m = load_model(test::data_dir() + "/models/stories260K/stories260K.gguf");
  const ModelConfig& c = m->config;
  const int n_seqs = 4, T = 64, L = c.n_layers();
  const auto toks = some_tokens(n_seqs * T, c.vocab, 6);
  PlanLossRequest req;
  req.leave_one_out = true;
  for (int l = 0; l < L; ++l) {
    const LayerShape& s = c.layers[l];
    PlanBlock b;
    for (int g = 0; g < s.n_kv_head; ++g) b.kept_kv.push_back(g);
    for (int h = 0; h < s.n_head; ++h) b.kept_heads.push_back(h);
    for (int j = 0; j < s.ffn; j += 2) b.kept_channels.push_back(j);
    if (l == 1) b.kept_kv.resize(s.n_kv_head / 2), b.kept_heads.resize(s.n_head / 2);  // block 1: the first half of its KV groups with their query heads
    if (l == 3) b.kept_kv.clear(), b.kept_heads.clear(), b.attn_removed = true;
    BlockMeans mm;
    mm.head_mean.assign(static_cast<size_t>(s.n_head) * c.head_dim, 0.02);
    mm.channel_mean.assign(s.ffn, 0.01);
    mm.attn_out_mean.assign(c.dim, 0.01);
    mm.mlp_out_mean.assign(c.dim, -0.01);
    req.plan.push_back(b);
    req.means.push_back(mm);
  }
  const TokenBatches windows{toks.data(), n_seqs, T, 1};
  const PlanLosses cpu = measure_plan_losses(*m, windows, req, nullptr, {});
  compare_on_gpu(
      "plan loss", 1e-4, [&](const RunDevices& dev) { return measure_plan_losses(*m, windows, req, nullptr, {}, dev); },
      [&](const PlanLosses& gpu, Agreement& a) {
        a.near(gpu.intact_nll, cpu.intact_nll, "intact nll");
        a.near(gpu.plan.nll, cpu.plan.nll, "plan nll");
        a.near(gpu.plan.kl, cpu.plan.kl, "plan kl");
        for (int l = 0; l < L; ++l) {
          if (!std::isnan(cpu.attn_restored[l].kl)) a.near(gpu.attn_restored[l].kl, cpu.attn_restored[l].kl, "attention restored " + std::to_string(l));
          if (!std::isnan(cpu.mlp_restored[l].kl)) a.near(gpu.mlp_restored[l].kl, cpu.mlp_restored[l].kl, "MLP restored " + std::to_string(l));
        }
      });
}

TEST(Cuda, LayerInputCaptureOnGpuMatchesCpu) {
  // Least-squares compensation's capture with the blocks on the GPU (its hook tensors back to the CPU's
  // accumulators) against the CPU sweep, on stories260K: f32 to rounding, bf16 within its precision.
  REQUIRE_DATA("models/stories260K/stories260K.gguf");
  auto m = load_model(test::data_dir() + "/models/stories260K/stories260K.gguf");
  const int n_seqs = 6, T = 64;
  const auto toks = some_tokens(n_seqs * T, m->config.vocab, 7);
  const TokenBatches in{toks.data(), n_seqs, T, 4};
  const std::vector<LayerInputTarget> targets{{0, false}, {2, true}, {4, false}, {4, true}};
  using Covariances = std::map<std::pair<int, bool>, std::vector<double>>;
  auto capture = [&](LayerInputOrder order, const LayerInputRunnerFactory& runner) {
    Covariances into;
    capture_layer_inputs(*m, targets, in, 1ull << 30, nullptr, {}, [&into](const LayerInputTarget& t, const Moments& mo) { into[{t.layer, t.mlp}] = mo.covariance(); },
                         order, runner);
    return into;
  };
  const Covariances cpu = capture(LayerInputOrder::kBlockMajor, {});
  // relative Frobenius difference of each layer's input covariance
  compare_on_gpu(
      "layer-input capture", 1e-3, [&](const RunDevices& dev) { return capture(LayerInputOrder::kAuto, layer_input_runner(*m, dev, T)); },
      [&](const Covariances& gpu, Agreement& a) {
        for (const auto& [key, c] : cpu) {
          const std::vector<double>& g = gpu.at(key);
          double num = 0, den = 0;
          for (size_t i = 0; i < c.size(); ++i) num += (g[i] - c[i]) * (g[i] - c[i]), den += c[i] * c[i];
          a.within(std::sqrt(num / std::max(den, 1e-30)), "layer " + std::to_string(key.first) + (key.second ? " MLP" : " attention"));
        }
      });
}

// Several GPU runners splitting the batches: two on device 0 exercise the multi-GPU path (one thread and one
// stream per runner, captures merged) on a one-GPU machine; every device when there are more.
TEST(Cuda, CalibrationSplitAcrossRunnersMatchesCpu) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 9));
  const int n_seqs = 7, T = 24;
  const auto toks = some_tokens(n_seqs * T, m->config.vocab, 5);
  const TokenBatches in{toks.data(), n_seqs, T, 2};
  const cuda::Probe p = cuda::probe();
  RunDevices dev;
  dev.precision = cuda::Precision::kF32;
  dev.cuda_devices = {0, 0};
  for (size_t i = 1; i < p.devices.size(); ++i) dev.cuda_devices.push_back(p.devices[i].index);
  StatisticsCapture cpu(m->config, {}), gpu(m->config, {});
  try {
    calibrate_streamed(*m, in, gpu, nullptr, nullptr, dev);
  } catch (const Error& e) {
    SKIP_OR_FAIL_WITHOUT_GPU(e.what());
  }
  calibrate_streamed(*m, in, cpu, nullptr, nullptr);
  ASSERT_EQ(gpu.tokens(), cpu.tokens());
  const AnalysisResult a = analyze_capture(cpu, m->config, 1e-6), b = analyze_capture(gpu, m->config, 1e-6);
  for (size_t l = 0; l < a.blocks.size(); ++l) {
    EXPECT_NEAR(a.blocks[l].te, b.blocks[l].te, 1e-3 * std::max(1.0, std::abs(a.blocks[l].te))) << l;
    EXPECT_NEAR(a.blocks[l].cosine, b.blocks[l].cosine, 1e-4) << l;
  }
}


// ---- The fused capture (cuda/device_capture.cuh) and hidden states held on the GPU.

namespace {

// The fused capture's reference: calibrate_streamed's two passes by hand on one runner, every hook tensor
// copied to the host for the CPU's capture. Same forward arithmetic as the fused run, so the two differ only
// by how the accumulators were summed.
void capture_through_host_hooks(const Model& m, cuda::BlockRunner& runner, const TokenBatches& in, StatisticsCapture& cap) {
  const ModelConfig& c = m.config;
  const int d = c.dim, r = cap.joint_dim(), T = in.seq_len;
  const int64_t N = static_cast<int64_t>(in.n_seqs) * T;
  std::vector<float> h(N * d), xn(N * d), yp(N * r);
  auto pass = [&](bool capturing) {
    embed_tokens(m, in.tokens, N, h.data());
    for (int l = 0; l < c.n_layers(); ++l) {
      LayerBuffers buffers;
      runner.load_block(l, m.layer_weights(l, buffers));
      for (int s0 = 0; s0 < in.n_seqs; s0 += in.batch_seqs) {
        const int nb = std::min(in.batch_seqs, in.n_seqs - s0);
        const int64_t row0 = static_cast<int64_t>(s0) * T;
        runner.run(&h[row0 * d], nb, capturing ? &cap : nullptr);
        if (capturing) cap.fold_block(l, &yp[row0 * r], static_cast<int64_t>(nb) * T);
      }
    }
  };
  pass(false);
  for (int s0 = 0; s0 < in.n_seqs; s0 += in.batch_seqs) {  // per batch, as calibrate_streamed projects
    const int64_t row0 = static_cast<int64_t>(s0) * T, rows = static_cast<int64_t>(std::min(in.batch_seqs, in.n_seqs - s0)) * T;
    rmsnorm_cpu(&h[row0 * d], m.output_norm, &xn[row0 * d], rows, d, c.norm_eps);
    cap.project_output(&xn[row0 * d], rows, &yp[row0 * r]);
  }
  pass(true);
  cap.add_tokens(N);
}

// Covariances entry by entry relative to √(c_ii c_jj), means relative to their spread.
void expect_moments_close(const Moments& a, const Moments& b, double rel, const std::string& what) {
  ASSERT_EQ(a.count(), b.count()) << what;
  const int k = a.dim();
  const auto ca = a.covariance(), cb = b.covariance(), ma = a.mean(), mb = b.mean();
  for (int i = 0; i < k; ++i) {
    const double sd_i = std::sqrt(std::abs(cb[static_cast<size_t>(i) * k + i]));
    ASSERT_NEAR(ma[i], mb[i], rel * (std::abs(mb[i]) + sd_i) + 1e-12) << what << " mean " << i;
    for (int j = 0; j < k; ++j) {
      const double scale = sd_i * std::sqrt(std::abs(cb[static_cast<size_t>(j) * k + j]));
      ASSERT_NEAR(ca[static_cast<size_t>(i) * k + j], cb[static_cast<size_t>(i) * k + j], rel * scale + 1e-12) << what << " " << i << "," << j;
    }
  }
}

void expect_vectors_close(const std::vector<double>& a, const std::vector<double>& b, double rel, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double scale = 0;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], rel * scale + 1e-12) << what << " " << i;
}

}  // namespace

// Every accumulator of the fused capture against the CPU capture fed host copies of the same forward pass:
// float64 products (the default for narrow joint vectors) agree to float64 rounding; the float32 GEMM
// products (wide joint vectors, here forced with a projection) to float32 rounding.
TEST(Cuda, FusedCaptureMatchesHostCaptureOfTheSameForward) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 13));  // GQA, biases, attention-free and MLP-free blocks
  const int n_seqs = 5, T = 48;
  const auto toks = some_tokens(n_seqs * T, m->config.vocab, 21);
  const TokenBatches in{toks.data(), n_seqs, T, 2};
  CaptureOptions exact, projected;
  projected.max_dim = 16;
  projected.proj_dim = 12;
  projected.products = Accumulation::kBlockedFloat32;
  for (const auto& [name, o, rel] : {std::tuple{"float64 products", exact, 1e-9}, std::tuple{"projected, float32 products", projected, 2e-5}}) {
    SCOPED_TRACE(name);
    std::string why;
    auto runner = make_runner(*m, T, static_cast<int64_t>(in.batch_seqs) * T, cuda::Precision::kBF16, cuda::GemmBackend::kAuto, &why);
    if (!runner) SKIP_OR_FAIL_WITHOUT_GPU(why);
    StatisticsCapture host(m->config, o), fused(m->config, o);
    capture_through_host_hooks(*m, *runner, in, host);
    RunDevices dev;
    dev.cuda_devices = {0};
    dev.precision = cuda::Precision::kBF16;
    const CalibrationReport report = calibrate_streamed(*m, in, fused, nullptr, nullptr, dev);
    std::printf("fused capture (%s): %s\n", name, report.device.c_str());  // recorded by gpu-check.sh
    ASSERT_EQ(fused.tokens(), host.tokens());
    for (int l = 0; l < m->config.n_layers(); ++l) {
      SCOPED_TRACE(l);
      expect_moments_close(fused.block_moments(l), host.block_moments(l), rel, "joint");
      ASSERT_EQ(fused.head_moments(l).size(), host.head_moments(l).size());
      for (size_t h = 0; h < host.head_moments(l).size(); ++h) expect_moments_close(fused.head_moments(l)[h], host.head_moments(l)[h], 1e-9, "head");
      expect_vectors_close(fused.channel_stats(l).mean(), host.channel_stats(l).mean(), 1e-9, "channel mean");
      expect_vectors_close(fused.channel_stats(l).variance(), host.channel_stats(l).variance(), 1e-9, "channel variance");
      expect_vectors_close(fused.attn_output_mean(l), host.attn_output_mean(l), 1e-9, "E[a]");
      expect_vectors_close(fused.mlp_output_mean(l), host.mlp_output_mean(l), 1e-9, "E[m]");
      EXPECT_NEAR(fused.block_cosine(l), host.block_cosine(l), 1e-12);
    }
  }
}

// Hidden states held on the GPU go through the same kernels as host batches: bit-identical blocks. A NaN
// among them stops the fused capture with NonFiniteActivations, as the CPU capture does.
TEST(Cuda, HeldHiddenStatesMatchHostRoundTrips) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 17));
  const ModelConfig& c = m->config;
  const int n_seqs = 3, T = 32;
  const int64_t N = static_cast<int64_t>(n_seqs) * T;
  const auto toks = some_tokens(static_cast<int>(N), c.vocab, 4);
  std::string why;
  auto runner = make_runner(*m, T, N, cuda::Precision::kBF16, cuda::GemmBackend::kAuto, &why);
  if (!runner) SKIP_OR_FAIL_WITHOUT_GPU(why);
  ASSERT_TRUE(runner->hold_hidden_states(N));
  std::vector<float> on_host(N * c.dim), held(N * c.dim);
  embed_tokens(*m, toks.data(), N, on_host.data());
  runner->put_hidden(0, on_host.data(), N);
  cuda::BlockBatch b;
  b.n_seqs = n_seqs;
  b.held_row0 = 0;
  for (int l = 0; l < c.n_layers(); ++l) {
    LayerBuffers buffers;
    runner->load_block(l, m->layer_weights(l, buffers));
    runner->run(on_host.data(), n_seqs, nullptr);
    runner->run(b);
  }
  runner->get_hidden(0, held.data(), N);
  EXPECT_EQ(held, on_host);
  cuda::BlockBatch outside = b;
  outside.held_row0 = 1;  // one row past the held states at the end
  EXPECT_THROW(runner->run(outside), Error);

  cuda::CaptureLayout layout;
  layout.joint_dim = c.dim;
  runner->enable_capture(layout);
  held[5 * c.dim + 3] = std::nanf("");
  runner->put_hidden(0, held.data(), N);
  std::vector<float> yp(N * c.dim, 0.0f);
  b.y_projected = yp.data();
  LayerBuffers buffers;
  runner->load_block(0, m->layer_weights(0, buffers));
  EXPECT_THROW(runner->run(b), NonFiniteActivations);
}

// ---- The loss (perplexity) on the GPU: blocks, output head and log-softmax there (core/evaluate/evaluate_streamed.h).

// Per position against forward() on the CPU: float32 to rounding, bfloat16 within a small fraction of the
// loss; one runner with the windows' states held on the GPU, and two runners splitting the windows.
TEST(Cuda, StreamedLossOnGpuMatchesCpu) {
  REQUIRE_DATA("models/stories260K/stories260K.gguf");
  REQUIRE_DATA("models/tinystories-656K/model.safetensors");
  test::TempDir t;
  const std::string synthetic = test::write_heterogeneous_model(t.file("m.gguf"), 23);
  for (const std::string path : {synthetic, test::data_dir() + "/models/stories260K/stories260K.gguf", test::data_dir() + "/models/tinystories-656K"}) {
    SCOPED_TRACE(path);
    auto m = load_model(path);
    const int n_seqs = 5, T = 96, batch = 2;
    const auto toks = some_tokens(n_seqs * T, m->config.vocab, 29);
    std::vector<float> cpu(static_cast<size_t>(n_seqs) * (T - 1));
    next_token_nll_streamed(*m, {toks.data(), n_seqs, T, batch}, cpu.data(), nullptr, nullptr, {});
    double cpu_mean = 0;
    for (float v : cpu) cpu_mean += v / cpu.size();
    for (auto p : {cuda::Precision::kF32, cuda::Precision::kBF16})
      for (const std::vector<int>& devices : {std::vector<int>{0}, std::vector<int>{0, 0}}) {
        RunDevices dev;
        dev.cuda_devices = devices;
        dev.precision = p;
        std::vector<float> gpu(cpu.size(), -1.0f);
        EvaluationReport report;
        try {
          report = next_token_nll_streamed(*m, {toks.data(), n_seqs, T, batch}, gpu.data(), nullptr, nullptr, dev);
        } catch (const Error& e) {
          SKIP_OR_FAIL_WITHOUT_GPU(e.what());
        }
        double gpu_mean = 0, max_diff = 0;
        for (size_t i = 0; i < gpu.size(); ++i) {
          gpu_mean += gpu[i] / gpu.size();
          max_diff = std::max(max_diff, static_cast<double>(std::abs(gpu[i] - cpu[i])));
        }
        std::printf("loss on %s: mean NLL %.5f (CPU %.5f), max |Δ| %.3g\n", report.device.c_str(), gpu_mean, cpu_mean, max_diff);
        EXPECT_GT(report.peak_device_bytes, 0u);
        if (p == cuda::Precision::kF32) {
          EXPECT_LT(max_diff, 1e-3 * std::max(1.0, cpu_mean)) << report.device;
        } else {
          EXPECT_NEAR(gpu_mean, cpu_mean, 0.02 * cpu_mean) << report.device;
          EXPECT_LT(max_diff, 0.5 * std::max(1.0, cpu_mean)) << report.device;
        }
      }
  }
}

// Zero-shot scoring on the GPU: batches of different padded lengths through one runner (its RoPE tables and
// buffers sized for the longest), against score_spans on the CPU.
TEST(Cuda, StreamedScoresOnGpuMatchCpu) {
  REQUIRE_DATA("models/stories260K/stories260K.gguf");
  auto m = load_model(test::data_dir() + "/models/stories260K/stories260K.gguf");
  const auto toks = some_tokens(3000, m->config.vocab, 31);
  std::vector<ScoreSpan> spans;
  int64_t at = 0;
  for (int i = 0; i < 40; ++i) {
    const int len = 8 + (i * 37) % 120;
    spans.push_back({at, len, len / 2});
    at += len;
  }
  ScoreOptions o;
  o.batch_tokens = 512;
  const auto cpu = score_spans(*m, toks.data(), spans, o);
  for (auto p : {cuda::Precision::kF32, cuda::Precision::kBF16}) {
    RunDevices dev;
    dev.cuda_devices = {0};
    dev.precision = p;
    EvaluationReport report;
    std::vector<SpanScore> gpu;
    try {
      gpu = score_spans_streamed(*m, toks.data(), spans, o, dev, &report);
    } catch (const Error& e) {
      SKIP_OR_FAIL_WITHOUT_GPU(e.what());
    }
    ASSERT_EQ(gpu.size(), cpu.size());
    double max_rel = 0;
    int same_greedy = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
      max_rel = std::max(max_rel, std::abs(gpu[i].logprob - cpu[i].logprob) / std::max(1.0, std::abs(cpu[i].logprob)));
      same_greedy += gpu[i].greedy == cpu[i].greedy;
    }
    std::printf("scores on %s: max relative |Δ logprob| %.3g, same greedy %d/%zu\n", report.device.c_str(), max_rel, same_greedy, cpu.size());
    EXPECT_LT(max_rel, p == cuda::Precision::kF32 ? 1e-4 : 3e-2) << report.device;
    EXPECT_GE(same_greedy, static_cast<int>(cpu.size()) - (p == cuda::Precision::kF32 ? 0 : 2)) << report.device;
  }
}

// ---- Every block kernel against its CPU twin, one row per kernel and shape (cuda/kernel_check.h). Shapes
// include the awkward ones: odd widths, a single row, GQA groups, windows shorter than the sequence.
namespace {

struct KernelRow {
  const char* name;       // also the kernel run_kernel launches
  std::vector<int64_t> dims;
  double tolerance;       // max |gpu − cpu| / max(1, |cpu|)
};

std::vector<float> random_floats(size_t n, std::mt19937& g, float scale = 1.0f) {
  std::normal_distribution<float> d(0, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// The call for a row, and the CPU twin's output for the same inputs.
std::pair<cuda::KernelCall, std::vector<float>> case_for(const KernelRow& row) {
  std::mt19937 g(11);
  cuda::KernelCall call;
  call.kernel = row.name;
  call.dims = row.dims;
  std::vector<float> ref;
  const std::string k = row.name;
  if (k == "rmsnorm") {
    const int64_t rows = row.dims[0];
    const int dim = static_cast<int>(row.dims[1]);
    call.in = {random_floats(rows * dim, g, 3), random_floats(dim, g)};
    ref.resize(rows * dim);
    rmsnorm_cpu(call.in[0].data(), call.in[1].data(), ref.data(), rows, dim, 1e-5f);
  } else if (k == "convert_bf16" || k == "convert_f16") {
    call.in = {random_floats(row.dims[0], g, 100)};
    for (float x : call.in[0]) ref.push_back(k == "convert_bf16" ? bf16_to_f32(f32_to_bf16(x)) : f16_to_f32(f32_to_f16(x)));
  } else if (k == "rope_interleaved" || k == "rope_half") {
    const int64_t rows = row.dims[0];
    const int period = static_cast<int>(row.dims[1]), nh = static_cast<int>(row.dims[2]), hd = static_cast<int>(row.dims[3]);
    ModelConfig c;
    c.head_dim = hd;
    c.dim = nh * hd;
    c.rope_layout = k == "rope_interleaved" ? RopeLayout::kInterleaved : RopeLayout::kHalf;
    std::vector<float> cos_t, sin_t;
    rope_tables(c, 0, period, cos_t, sin_t);
    call.in = {random_floats(rows * nh * hd, g), cos_t, sin_t};
    ref = call.in[0];
    apply_rope(c, ref.data(), rows, period, nh, cos_t, sin_t);
  } else if (k == "attention") {
    const int n_seqs = static_cast<int>(row.dims[0]), T = static_cast<int>(row.dims[1]), nh = static_cast<int>(row.dims[2]),
              nkv = static_cast<int>(row.dims[3]), hd = static_cast<int>(row.dims[4]), window = static_cast<int>(row.dims[5]);
    const int64_t rows = static_cast<int64_t>(n_seqs) * T;
    call.in = {random_floats(rows * nh * hd, g), random_floats(rows * nkv * hd, g), random_floats(rows * nkv * hd, g)};
    ModelConfig c;
    c.head_dim = hd;
    c.dim = nh * hd;
    c.sliding_window = window;
    LayerShape s{nh, nkv, 0, false, false, false};
    ref.resize(rows * nh * hd);
    causal_attention_cpu(c, s, call.in[0].data(), call.in[1].data(), call.in[2].data(), ref.data(), n_seqs, T);
  } else if (k == "swiglu" || k == "add") {
    const int64_t n = row.dims[0];
    call.in = {random_floats(n, g, 2), random_floats(n, g, 2)};
    ref = call.in[0];
    if (k == "swiglu") swiglu(ref.data(), call.in[1].data(), n);
    else add_inplace(ref.data(), call.in[1].data(), n);
  } else if (k == "add_bias") {
    const int64_t rows = row.dims[0];
    const int n = static_cast<int>(row.dims[1]);
    call.in = {random_floats(rows * n, g), random_floats(n, g)};
    ref = call.in[0];
    add_row_bias(ref.data(), call.in[1].data(), rows, n);
  } else if (k == "next_token_nll") {
    const int64_t rows = row.dims[0];
    const int T = static_cast<int>(row.dims[1]), V = static_cast<int>(row.dims[2]);
    call.in = {random_floats(rows * V, g, 4)};
    for (int64_t r = 0; r < rows; ++r) call.ids.push_back(static_cast<int32_t>((r * 7919) % V));
    const int64_t losses = rows / T * (T - 1);
    std::vector<float> nll(losses);
    std::vector<int32_t> arg(losses);
    next_token_nll_of_logits(call.in[0].data(), 0, rows, T, V, call.ids.data(), nll.data(), arg.data());
    ref = nll;
    for (int32_t a : arg) ref.push_back(static_cast<float>(a));
  } else if (k == "log_softmax") {  // dims: rows, V
    const int64_t rows = row.dims[0];
    const int V = static_cast<int>(row.dims[1]);
    call.in = {random_floats(rows * V, g, 4)};
    ref = call.in[0];
    log_softmax_rows_cpu(ref.data(), rows, V);
  } else if (k == "kl_next_token") {  // dims: rows, T, V, and how far the reference is (its logits' noise × 1000)
    const int64_t rows = row.dims[0];
    const int T = static_cast<int>(row.dims[1]), V = static_cast<int>(row.dims[2]);
    std::vector<float> lg = random_floats(rows * V, g, 4), noise = random_floats(rows * V, g, static_cast<float>(row.dims[3]) / 1000);
    std::vector<float> lp(lg.size());
    for (size_t i = 0; i < lg.size(); ++i) lp[i] = lg[i] + noise[i];
    log_softmax_rows_cpu(lp.data(), rows, V);
    call.in = {lg, lp};
    for (int64_t r = 0; r < rows; ++r) call.ids.push_back(static_cast<int32_t>((r * 7919) % V));
    std::vector<float> kl(rows), nll(rows / T * (T - 1));
    kl_next_token_rows_cpu(lg.data(), lp.data(), rows, T, V, call.ids.data(), kl.data(), nll.data());
    ref = kl;
    ref.insert(ref.end(), nll.begin(), nll.end());
  }
  return {call, ref};
}

class KernelTable : public ::testing::TestWithParam<KernelRow> {};

std::string row_name(const ::testing::TestParamInfo<KernelRow>& info) {
  std::string s = info.param.name;
  for (int64_t d : info.param.dims) s += "_" + std::to_string(d);
  return s;
}

}  // namespace

TEST_P(KernelTable, MatchesCpuTwin) {
  const KernelRow& row = GetParam();
  auto [call, ref] = case_for(row);
  ASSERT_FALSE(ref.empty()) << "no CPU twin for " << row.name;
  std::vector<float> out;
  std::string err;
  if (!cuda::run_kernel(call, out, &err)) {
    EXPECT_FALSE(err.empty());
    SKIP_OR_FAIL_WITHOUT_GPU(err);
  }
  ASSERT_EQ(out.size(), ref.size());
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(out[i]) - ref[i]) / std::max(1.0, std::abs(static_cast<double>(ref[i]))));
  EXPECT_LE(worst, row.tolerance) << row.name;
}

// One line per kernel and shape (dims as each kernel reads them, see cuda/kernel_check.cu).
INSTANTIATE_TEST_SUITE_P(
    Cuda, KernelTable,
    ::testing::Values(KernelRow{"rmsnorm", {300, 1000}, 1e-5}, KernelRow{"rmsnorm", {1, 4096}, 1e-5}, KernelRow{"rmsnorm", {7, 33}, 1e-5},
                      KernelRow{"convert_bf16", {10001}, 0}, KernelRow{"convert_f16", {10001}, 0},
                      KernelRow{"rope_interleaved", {96, 32, 8, 64}, 1e-5}, KernelRow{"rope_half", {96, 32, 8, 64}, 1e-5},
                      KernelRow{"rope_interleaved", {5, 5, 3, 8}, 1e-5}, KernelRow{"rope_half", {40, 20, 2, 128}, 1e-5},
                      KernelRow{"attention", {2, 33, 8, 8, 64, 0}, 2e-5}, KernelRow{"attention", {3, 40, 8, 2, 32, 0}, 2e-5},
                      KernelRow{"attention", {1, 64, 4, 1, 128, 16}, 2e-5}, KernelRow{"attention", {2, 17, 6, 3, 8, 5}, 2e-5},
                      KernelRow{"swiglu", {100003}, 1e-6}, KernelRow{"add", {100003}, 0}, KernelRow{"add_bias", {37, 515}, 0},
                      KernelRow{"next_token_nll", {64, 16, 512}, 1e-5}, KernelRow{"next_token_nll", {30, 10, 32000}, 1e-5},
                      KernelRow{"log_softmax", {20, 32000}, 1e-5}, KernelRow{"log_softmax", {33, 7}, 1e-5},
                      KernelRow{"kl_next_token", {64, 16, 512, 4000}, 1e-5}, KernelRow{"kl_next_token", {30, 10, 32000, 10}, 1e-6}),
    row_name);
