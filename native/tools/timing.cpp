// entroprune_timing: times the native stages of a prune on one machine without Node (the GPU machine):
// load, a plain forward pass, analyze (capture + estimators), a plan stand-in, apply + save, with peak
// memory. Calibration tokens are seeded random ids (timing does not need real text).
//   entroprune_timing <model> [--samples 8] [--seq-len 512] [--batch 1] [--stream] [--ratio 0.3]
//                     [--threads N] [--out pruned.gguf] [--device cpu|cuda|cuda:N] [--precision bf16|f16|f32]
// With --device cuda the blocks run on the GPU (layer streaming, so --stream is implied) and analyze is
// calibrate_streamed there, with the capture fused on the GPU; "forward" is then its first pass — every
// calibration token through every block with no capture (block-major, the output head excluded from the
// FLOPs) — and captureOverhead compares its second pass (the same forward with the capture) to it; lossS
// times perplexity's work on the same tokens (blocks, output head and log-softmax on the GPU).
// The plan step here is a stand-in (every MLP keeps its highest-entropy channels, a uniform cut of
// `ratio`): the real planner is TypeScript and runs in milliseconds on any machine, so it is timed by the
// Node side. Prints one JSON line.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "core/apply/write_pruned.h"
#include "core/device/block_runner.h"
#include "core/evaluate/evaluate.h"
#include "core/forward/forward.h"
#include "core/forward/layer_ops.h"
#include "core/forward/threads.h"
#include "core/load/model.h"
#include "core/measure/measure.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1048576.0;  // KiB -> GiB
}

// Forward FLOPs per calibration window: 2 per linear weight per token (blocks and the output head), plus
// causal attention scores and values (2·2·n_head·head_dim per query-key pair, T(T+1)/2 pairs).
double forward_flops(const ep::Model& m, int T) {
  const ep::ModelConfig& c = m.config;
  double linear = static_cast<double>(m.block_linear_parameter_count()) + static_cast<double>(c.vocab) * c.dim;
  double attn = 0;
  for (const ep::LayerShape& s : c.layers) attn += 4.0 * s.n_head * c.head_dim * (T * (T + 1.0) / 2);
  return 2 * linear * T + attn;
}

double block_flops(const ep::Model& m, int T) { return forward_flops(m, T) - 2.0 * m.config.vocab * m.config.dim * T; }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: entroprune_timing <model> [--samples N] [--seq-len N] [--batch N] [--stream] [--ratio R] [--threads N] [--out file.gguf]\n");
    return 2;
  }
  const std::string path = argv[1];
  int samples = 8, seq_len = 512, batch = 1, threads = 0;
  double ratio = 0.3;
  bool stream = false;
  std::string out, device = "cpu", precision;
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (k == "--samples") samples = std::atoi(val().c_str());
    else if (k == "--seq-len") seq_len = std::atoi(val().c_str());
    else if (k == "--batch") batch = std::atoi(val().c_str());
    else if (k == "--threads") threads = std::atoi(val().c_str());
    else if (k == "--ratio") ratio = std::atof(val().c_str());
    else if (k == "--out") out = val();
    else if (k == "--stream") stream = true;
    else if (k == "--device") device = val();
    else if (k == "--precision") precision = val();
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  int cuda_device = -1;
  if (device == "cuda") cuda_device = 0;
  else if (device.rfind("cuda:", 0) == 0) cuda_device = std::atoi(device.c_str() + 5);
  else if (device != "cpu") {
    std::fprintf(stderr, "--device must be cpu, cuda or cuda:N\n");
    return 2;
  }
  if (cuda_device >= 0) stream = true;  // the GPU path is the block-major one
  const std::optional<ep::cuda::Precision> precision_asked = ep::cuda::precision_from_name(precision);
  if (!precision.empty() && !precision_asked) {
    std::fprintf(stderr, "--precision must be bf16, f16 or f32\n");
    return 2;
  }
  try {
    ep::set_num_threads(threads);
    double t0 = now();
    ep::LoadOptions lo;
    lo.stream_layers = stream;
    auto model = ep::load_model(path, lo);
    const double t_load = now() - t0;
    const ep::ModelConfig& c = model->config;
    std::vector<int32_t> tokens(static_cast<size_t>(samples) * seq_len);
    uint64_t s = 12345;
    for (int32_t& t : tokens) t = static_cast<int32_t>(((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 33) % c.vocab);

    ep::RunDevices dev;
    if (cuda_device >= 0) dev.cuda_devices = {cuda_device};
    if (precision_asked) dev.precision = *precision_asked;
    std::string gpu_description = "cpu";
    uint64_t gpu_peak = 0;
    double t_forward = 0, flops = 0, capture_overhead = 0;
    const ep::TokenBatches in{tokens.data(), samples, seq_len, batch};
    if (cuda_device < 0) {
      // CPU forward (what perplexity does: logits and NLL of every position)
      std::vector<float> nll(static_cast<size_t>(samples) * (seq_len - 1));
      t0 = now();
      ep::EvaluateRequest e;
      e.windows = in;
      ep::evaluate_windows(*model, e, nll.data(), nullptr, nullptr);
      t_forward = now() - t0;
      flops = forward_flops(*model, seq_len) * samples;
    }

    // analyze
    t0 = now();
    ep::MeasureRequest mr;
    mr.windows = in;
    mr.streamed = stream;
    mr.device = dev;
    const ep::MeasureResult measured = ep::measure_model(*model, mr, nullptr, nullptr);
    const ep::AnalysisResult& a = measured.analysis;
    if (stream) {
      const ep::CalibrationReport& report = measured.run;
      gpu_peak = report.peak_device_bytes;
      if (cuda_device >= 0) {  // the GPU's forward is the streamed run's first pass
        gpu_description = report.device;
        t_forward = report.forward_seconds;
        flops = block_flops(*model, seq_len) * samples;
        capture_overhead = report.capture_seconds / report.forward_seconds - 1;
      }
    }
    const double t_analyze = now() - t0;
    if (cuda_device < 0) capture_overhead = t_analyze / t_forward - 1;

    // on the GPU also the loss of every window (perplexity's work: blocks, output head, log-softmax)
    double t_loss = 0;
    if (cuda_device >= 0) {
      std::vector<float> nll(static_cast<size_t>(samples) * (seq_len - 1));
      t0 = now();
      ep::EvaluateRequest e;
      e.windows = in;
      e.device = dev;
      const ep::EvaluationReport r = ep::evaluate_windows(*model, e, nll.data(), nullptr, nullptr);
      t_loss = now() - t0;
      gpu_peak = std::max(gpu_peak, r.peak_device_bytes);
    }

    // plan stand-in: each MLP keeps its (1 − ratio) highest-entropy channels; attention is kept whole
    t0 = now();
    std::vector<ep::PlanBlock> plan(c.n_layers());
    std::vector<ep::BlockMeans> means(c.n_layers());
    for (int l = 0; l < c.n_layers(); ++l) {
      const ep::LayerShape& sh = c.layers[l];
      for (int g = 0; g < sh.n_kv_head; ++g) plan[l].kept_kv.push_back(g);
      for (int h = 0; h < sh.n_head; ++h) plan[l].kept_heads.push_back(h);
      std::vector<int> order(sh.ffn);
      std::iota(order.begin(), order.end(), 0);
      const auto& ent = a.blocks[l].channel_entropy;
      std::sort(order.begin(), order.end(), [&](int x, int y) { return ent[x] > ent[y]; });
      order.resize(std::max<size_t>(1, static_cast<size_t>(sh.ffn * (1 - ratio))));
      std::sort(order.begin(), order.end());
      plan[l].kept_channels = order;
      means[l].head_mean = a.blocks[l].head_mean;
      means[l].channel_mean = a.blocks[l].channel_mean;
      means[l].attn_out_mean = a.blocks[l].attn_out_mean;
      means[l].mlp_out_mean = a.blocks[l].mlp_out_mean;
    }
    const double t_plan = now() - t0;

    // apply + save (BF16 GGUF)
    t0 = now();
    const std::string target = out.empty() ? std::filesystem::temp_directory_path().string() + "/entroprune-timing.gguf" : out;
    ep::WriteRequest wr;
    wr.output = target;
    wr.dtype = ep::DType::BF16;
    ep::write_pruned_model(*model, plan, means, wr, nullptr, nullptr);
    const double t_apply = now() - t0;
    const auto bytes = std::filesystem::file_size(target);
    if (out.empty()) std::filesystem::remove(target);

    const double tokens_n = static_cast<double>(samples) * seq_len;
    std::printf(
        "{\"model\":\"%s\",\"device\":\"%s\",\"gpuPeakGiB\":%.2f,\"threads\":%d,\"stream\":%s,\"samples\":%d,\"seqLen\":%d,\"params\":%llu,"
        "\"loadS\":%.3f,\"forwardS\":%.3f,\"forwardTokensPerS\":%.1f,\"forwardTflops\":%.3f,\"analyzeS\":%.3f,\"captureOverhead\":%.3f,"
        "\"lossS\":%.3f,\"lossTokensPerS\":%.1f,\"planStandInS\":%.3f,\"applySaveS\":%.3f,\"outputBytes\":%llu,\"totalS\":%.3f,\"peakRssGiB\":%.2f}\n",
        path.c_str(), gpu_description.c_str(), gpu_peak / 1073741824.0, ep::num_threads(), stream ? "true" : "false", samples, seq_len, static_cast<unsigned long long>(model->parameter_count()),
        t_load, t_forward, tokens_n / t_forward, flops / t_forward / 1e12, t_analyze, capture_overhead, t_loss, t_loss > 0 ? tokens_n / t_loss : 0.0, t_plan, t_apply,
        static_cast<unsigned long long>(bytes), t_load + t_analyze + t_plan + t_apply, peak_rss_gib());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "entroprune_timing: %s\n", e.what());
    return 1;
  }
  return 0;
}
