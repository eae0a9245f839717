// The measured sensitivities on block runners — the GPUs (sensitivity.h): the same sums as the CPU driver, block-major. For a
// group of windows, every changed model made so far (a part of an earlier block removed) advances through
// block l together with the intact model, then the removals of block l branch off the intact h_{l−1}; at the
// end the output head compares each changed model with the intact one. Each block's weights thus cross
// PCIe once per group plus once per removal made in it (about 4·L uploads, where running every removal to
// the end on its own would take about 1.5·L²), and every hidden state stays on the GPU when it fits.
//
// Groups are as many windows as the GPU holds — (1 + removals) hidden states and the reference
// log-probabilities of a group — and are dealt round-robin to the GPUs, one thread each.
#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/forward/forward.h"
#include "core/forward/layer_ops.h"
#include "core/measure/removal_parts.h"

namespace ep::removal {

namespace {

// Where a group's hidden states live: on the GPU (slot k at rows k·N of the runner's held states) or, when
// they do not fit there, in host memory, copied in and out at every block.
class GroupStates {
 public:
  GroupStates(cuda::BlockRunner& runner, int n_seqs, int T, int d, int slots, bool held)
      : runner_(runner), n_seqs_(n_seqs), T_(T), d_(d), N_(static_cast<int64_t>(n_seqs) * T), held_(held) {
    if (!held_) host_.resize(slots);
  }
  cuda::BlockBatch batch(int slot) {
    cuda::BlockBatch b;
    b.n_seqs = n_seqs_;
    b.seq_len = T_;
    if (held_) {
      b.held_row0 = slot * N_;
    } else {
      b.host = host_[slot].data();
    }
    return b;
  }
  void put(int slot, const std::vector<float>& x) {
    if (held_)
      runner_.put_hidden(slot * N_, x.data(), N_);
    else
      host_[slot] = x;
  }
  void get(int slot, std::vector<float>& x) {
    x.resize(static_cast<size_t>(N_) * d_);
    if (held_)
      runner_.get_hidden(slot * N_, x.data(), N_);
    else
      x = host_[slot];
  }

 private:
  cuda::BlockRunner& runner_;
  int n_seqs_, T_, d_;
  int64_t N_;
  bool held_;
  std::vector<std::vector<float>> host_;
};

struct Job {
  const Model& model;
  const int32_t* tokens;
  int seq_len;
  const SublayerMeans& means;
  const PartialCuts* partial;
  const std::atomic<bool>* cancel;
};

int removals_of(const ModelConfig& c, const PartialCuts* partial) {
  int n = 0;
  for (int l = 0; l < c.n_layers(); ++l)
    for (int kind = 0; kind < kKinds; ++kind) n += present(c, partial, l, kind);
  return n;
}

// One group of n windows starting at window g0, on `runner` (built for at least n·T rows).
void measure_group(const Job& job, cuda::BlockRunner& runner, bool held, int g0, int n, DamageSums& sums, const std::function<void()>& step) {
  const Model& model = job.model;
  const ModelConfig& c = model.config;
  const int L = c.n_layers(), d = c.dim, T = job.seq_len;
  const int64_t N = static_cast<int64_t>(n) * T;
  const int32_t* toks = job.tokens + static_cast<size_t>(g0) * T;
  GroupStates states(runner, n, T, d, 1 + removals_of(c, job.partial), held);

  std::vector<float> h(static_cast<size_t>(N) * d);
  embed_tokens(model, toks, N, h.data());
  states.put(0, h);
  std::vector<std::pair<int, int>> made;  // slot k + 1 holds the model with part made[k] = (block, kind) removed
  for (int l = 0; l < L; ++l) {
    throw_if_cancelled(job.cancel);
    LayerBuffers converted;
    const LayerWeights w = model.layer_weights(l, converted);
    runner.load_block(l, w);
    for (size_t k = 0; k < made.size(); ++k) runner.run(states.batch(static_cast<int>(k) + 1));
    states.get(0, h);  // h_{l−1}, where this block's removals branch off
    runner.run(states.batch(0));
    for (int kind = 0; kind < kKinds; ++kind) {
      if (!present(c, job.partial, l, kind)) continue;
      CutProjection storage[2];
      runner.load_block(l, removed_by_weights(model, l, w, kind, job.means, job.partial, storage));
      const int slot = static_cast<int>(made.size()) + 1;
      states.put(slot, h);
      runner.run(states.batch(slot));
      made.emplace_back(l, kind);
    }
    step();
  }

  throw_if_cancelled(job.cancel);
  runner.load_output_head(model.output_norm, model.output, c.vocab);
  std::vector<float> nll(static_cast<size_t>(n) * (T - 1)), kl(N);
  runner.next_token_nll(states.batch(0), toks, nll.data(), nullptr);
  double base = 0;
  for (float v : nll) base += v;
  sums.base_nll += base;
  runner.keep_reference(states.batch(0));
  for (size_t k = 0; k < made.size(); ++k) {
    runner.compare_with_reference(states.batch(static_cast<int>(k) + 1), toks, kl.data(), nll.data());
    double nll_sum = 0, kl_sum = 0;
    for (float v : nll) nll_sum += v;
    for (float v : kl) kl_sum += v;
    const auto [l, kind] = made[k];
    sums.nll[kKinds * l + kind] += nll_sum - base;
    sums.kl[kKinds * l + kind] += kl_sum;
  }
  step();
}

}  // namespace

DamageSums measure_block_major(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means, const std::atomic<bool>* cancel,
                               const std::function<void(int64_t, int64_t)>& progress, const PartialCuts* partial, const RunDevices& device,
                               const RunnerFactory& make_runner) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers();
  const int n_devices = static_cast<int>(device.cuda_devices.size());
  const Job job{model, tokens, seq_len, means, partial, cancel};

  // Start with each device's share of the windows in one group; runner_holding_groups halves it to what fits.
  const int share = (n_seqs + n_devices - 1) / n_devices;
  std::mutex mu;
  int64_t done = 0, total = 0;
  std::vector<DamageSums> sums(n_devices, DamageSums(L));
  std::vector<std::exception_ptr> errors(n_devices);
  std::atomic<bool> stop{false};
  auto work = [&](int k) {
    try {
      // device k takes windows [k·share, (k+1)·share) in groups of `windows`
      const int first = k * share, last = std::min(n_seqs, first + share);
      if (first >= last) return;
      int windows = last - first;
      bool held = false;
      auto runner = cuda::runner_holding_groups([&](int64_t rows) { return make_runner(device.cuda_devices[k], rows); }, seq_len, 1 + removals_of(c, partial), windows,
                                                held);
      {
        std::lock_guard<std::mutex> lock(mu);
        total += static_cast<int64_t>((last - first + windows - 1) / windows) * (L + 1);  // this device's groups, L + 1 steps each
      }
      for (int g0 = first; g0 < last && !stop; g0 += windows)
        measure_group(job, *runner, held, g0, std::min(windows, last - g0), sums[k], [&] {
          std::lock_guard<std::mutex> lock(mu);
          progress(++done, std::max(done, total));
        });
    } catch (...) {
      errors[k] = std::current_exception();
      stop = true;
    }
  };
  if (n_devices == 1) {
    work(0);
  } else {
    std::vector<std::thread> threads;
    for (int k = 0; k < n_devices; ++k) threads.emplace_back(work, k);
    for (std::thread& t : threads) t.join();
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  DamageSums out(L);
  for (const DamageSums& s : sums) out.add(s);
  return out;
}

DamageSums measure_on_gpus(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means, const std::atomic<bool>* cancel,
                           const std::function<void(int64_t, int64_t)>& progress, const PartialCuts* partial, const RunDevices& device) {
  RopeTables rope;
  rope_tables(model.config, 0, seq_len, rope.cos, rope.sin);
  return measure_block_major(model, tokens, n_seqs, seq_len, means, cancel, progress, partial, device, [&](int gpu, int64_t max_rows) {
    cuda::BlockRunnerOptions o;
    o.device = gpu;
    o.precision = device.precision;
    o.gemm = device.gemm;
    return cuda::BlockRunner::create(model.config, rope, seq_len, max_rows, o);
  });
}

}  // namespace ep::removal
