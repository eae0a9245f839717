#include "core/device/layer_input_passes.h"

#include <algorithm>

#include "core/capture/layer_inputs.h"
#include "core/error.h"
#include "core/forward/layer_ops.h"

namespace ep {

namespace {

// One sweep, block by block: every calibration sequence through block l (its layers' inputs captured), then
// block l+1, up to the last block with a target. Each block's weights are read once and only one block's
// accumulators are held; every token's hidden state is (rows × dim floats). The batches and their order
// within a block are the batch-major pass's, so the moments come out bit-identical to it.
void capture_block_major(const Model& model, const std::vector<LayerInputTarget>& targets, const TokenBatches& in, const std::atomic<bool>* cancel,
                         const StageProgress& progress, const std::function<void(const LayerInputTarget&, const Moments&)>& use,
                         const LayerInputRunnerFactory& make_runner) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers(), T = in.seq_len;
  const int64_t N = static_cast<int64_t>(in.n_seqs) * T;
  check_tokens(model, in.tokens, N);
  int last = 0;
  for (const LayerInputTarget& t : targets) last = std::max(last, t.layer);
  std::vector<float> h(static_cast<size_t>(N * c.dim));
  embed_tokens(model, in.tokens, N, h.data());
  RopeTables rope;
  rope_tables(c, 0, T, rope.cos, rope.sin);
  const int64_t batch_rows = static_cast<int64_t>(std::min(in.batch_seqs, in.n_seqs)) * T;
  ForwardScratch scratch(c, make_runner ? 1 : batch_rows);
  std::unique_ptr<cuda::BlockRunner> runner = make_runner ? make_runner(batch_rows) : nullptr;
  const int64_t total = static_cast<int64_t>(in.n_seqs) * (last + 1);
  for (int l = 0; l <= last; ++l) {
    std::vector<char> ga(L, 0), gm(L, 0);
    for (const LayerInputTarget& t : targets)
      if (t.layer == l) (t.mlp ? gm : ga)[l] = 1;
    LayerInputCapture capture(c, ga, gm);
    LayerBuffers converted;  // a streamed model's block matrices, for this block only
    const LayerWeights w = model.layer_weights(l, converted);
    if (runner) runner->load_block(l, w);
    for (int s0 = 0; s0 < in.n_seqs; s0 += in.batch_seqs) {
      const int n = std::min(in.batch_seqs, in.n_seqs - s0);
      float* x = &h[static_cast<int64_t>(s0) * T * c.dim];
      if (runner) {
        throw_if_cancelled(cancel);
        cuda::BlockBatch b;
        b.n_seqs = n;
        b.seq_len = T;
        b.host = x;
        b.hooks = &capture;
        runner->run(b);
      } else {
        forward_block(c, l, w, x, n, T, rope, scratch, &capture, cancel);
      }
      if (progress) progress(static_cast<int64_t>(l) * in.n_seqs + s0 + n, total);
    }
    for (const LayerInputTarget& t : targets)
      if (t.layer == l) use(t, t.mlp ? *capture.mlp_input(l) : *capture.attn_input(l));
  }
}

}  // namespace

int capture_layer_inputs(const Model& model, const std::vector<LayerInputTarget>& targets_in, const TokenBatches& in, uint64_t memory_budget,
                         const std::atomic<bool>* cancel, const StageProgress& progress,
                         const std::function<void(const LayerInputTarget&, const Moments&)>& use, LayerInputOrder order,
                         const LayerInputRunnerFactory& runner) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers();
  std::vector<LayerInputTarget> targets;                        // with their widths, sublayers without units left out
  std::vector<uint64_t> block_bytes(static_cast<size_t>(L), 0);  // each block's accumulators (the sweep holds one block's)
  std::vector<std::vector<LayerInputTarget>> groups;            // batch-major passes: as many targets as fit the budget
  uint64_t used = 0;
  for (LayerInputTarget t : targets_in) {
    if (t.layer < 0 || t.layer >= L) throw Error(ErrorCode::kInvalidArgument, model.path, "layer input capture: no block " + std::to_string(t.layer));
    t.dim = layer_input_width(c, t.layer, t.mlp);
    if (t.dim <= 0) continue;
    const uint64_t bytes = LayerInputCapture::bytes_for(t.dim);
    targets.push_back(t);
    block_bytes[t.layer] += bytes;
    if (groups.empty() || used + bytes > memory_budget) {
      groups.emplace_back();
      used = 0;
    }
    groups.back().push_back(t);
    used += bytes;
  }
  if (targets.empty()) return 0;
  if (in.n_seqs <= 0 || in.seq_len <= 0 || in.batch_seqs <= 0 || !in.tokens)
    throw Error(ErrorCode::kInvalidArgument, model.path, "layer input capture needs calibration windows");
  // One block-major sweep when every token's hidden state and the largest block's accumulators fit the budget
  // (a 7B model at 128 × 2048 tokens: 4 GiB of hidden states), else batch-major passes, each a group of layers.
  const uint64_t block_max = *std::max_element(block_bytes.begin(), block_bytes.end());
  const uint64_t hidden = static_cast<uint64_t>(in.n_seqs) * in.seq_len * c.dim * sizeof(float);
  const bool fits_sweep = hidden + block_max <= memory_budget;
  const bool block_major = order == LayerInputOrder::kBlockMajor ||
                           (order == LayerInputOrder::kAuto && (groups.size() > 1 || runner) && fits_sweep);
  if (block_major) {
    capture_block_major(model, targets, in, cancel, progress, use, runner);
    return 1;
  }
  const int64_t total = static_cast<int64_t>(in.n_seqs) * static_cast<int64_t>(groups.size());
  int passes = 0;
  for (const auto& group : groups) {
    std::vector<char> ga(L, 0), gm(L, 0);
    for (const LayerInputTarget& t : group) (t.mlp ? gm : ga)[t.layer] = 1;
    LayerInputCapture capture(c, ga, gm);
    const int64_t before = static_cast<int64_t>(passes) * in.n_seqs;
    forward_batches(model, in, capture, cancel, [&](int done) {
      if (progress) progress(before + done, total);
    });
    ++passes;
    for (const LayerInputTarget& t : group) use(t, t.mlp ? *capture.mlp_input(t.layer) : *capture.attn_input(t.layer));
  }
  return passes;
}

LayerInputRunnerFactory layer_input_runner(const Model& model, const RunDevices& device, int seq_len) {
  if (device.cuda_devices.empty()) return {};
  return [&model, device, seq_len](int64_t max_rows) {
    RopeTables rope;
    rope_tables(model.config, 0, seq_len, rope.cos, rope.sin);
    cuda::BlockRunnerOptions o;
    o.device = device.cuda_devices.front();
    o.precision = device.precision;
    o.gemm = device.gemm;
    return cuda::BlockRunner::create(model.config, rope, seq_len, max_rows, o);
  };
}

}  // namespace ep
