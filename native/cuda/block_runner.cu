// CUDA implementation of ep::cuda::BlockRunner (block_runner.h): the step order of ep::forward_block, with
// the GEMMs of gemm.cuh and the kernels of block_kernels.cuh.
#include "core/device/block_runner.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "cuda/block_kernels.cuh"
#include "cuda/cublas_runtime.cuh"
#include "core/device/cuda_api.h"
#include "cuda/device_capture.cuh"
#include "cuda/device_memory.cuh"
#include "cuda/gemm.cuh"

namespace ep::cuda {

namespace {

// Pinned host memory for the hook copies (device-to-host at full PCIe speed).
class PinnedBuffer {
 public:
  explicit PinnedBuffer(size_t floats) : p_(alloc_pinned_floats(floats)) {
    if (!p_) throw CudaFailure{"cudaMallocHost: cannot pin " + std::to_string(floats * sizeof(float)) + " bytes of host memory"};
  }
  ~PinnedBuffer() { free_pinned(p_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  float* get() const { return p_; }

 private:
  float* p_ = nullptr;
};

struct OutputHead {  // the output norm and vocabulary projection on the device, with its work buffers
  float* norm = nullptr;
  void* matrix = nullptr;  // [vocab, d] in the compute precision
  int vocab = 0;
  int64_t chunk_rows = 0;  // logits rows per GEMM
  float *logits = nullptr, *nll = nullptr;
  int32_t *tokens = nullptr, *argmax = nullptr;
  float *reference = nullptr, *kl = nullptr;  // keep_reference's log-probabilities [reference_rows, vocab]; per-row KL
  int64_t reference_rows = 0;
};

struct DeviceBlock {  // one block's weights on the device: matrices in the compute precision, the rest float32
  void *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr, *w_gate = nullptr, *w_up = nullptr, *w_down = nullptr;
  float *attn_norm = nullptr, *ffn_norm = nullptr, *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr, *b_down = nullptr;
};

class CudaBlockRunner final : public BlockRunner {
 public:
  CudaBlockRunner(const ModelConfig& c, const RopeTables& rope, int seq_len, int64_t max_rows, const BlockRunnerOptions& o)
      : c_(c), T_(seq_len), max_rows_(max_rows), o_(o) {
    check(cudaSetDevice(o.device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    try {
      allocate(rope);
    } catch (...) {
      cudaStreamDestroy(stream_);  // the destructor does not run for a constructor that throws
      throw;
    }
  }
  ~CudaBlockRunner() override {
    cudaSetDevice(o_.device);
    free_block();
    if (stream_) cudaStreamDestroy(stream_);
  }

  void allocate(const RopeTables& rope) {
    const ModelConfig& c = c_;
    const BlockRunnerOptions& o = o_;
    int max_q = 0, max_kv = 0, max_ffn = 0;
    size_t max_matrix = 0;
    for (const LayerShape& s : c.layers) {
      max_q = std::max(max_q, s.n_head * c.head_dim);
      max_kv = std::max(max_kv, s.n_kv_head * c.head_dim);
      max_ffn = std::max(max_ffn, s.ffn);
      max_matrix = std::max({max_matrix, static_cast<size_t>(s.n_head) * c.head_dim * c.dim, static_cast<size_t>(s.ffn) * c.dim});
    }
    const int64_t R = max_rows_, d = c.dim;
    const int pb = precision_bytes(o.precision);
    x_ = f32(R * d);
    tmp_ = f32(R * d);
    q_ = f32(R * max_q);
    k_ = f32(R * max_kv);
    v_ = f32(R * max_kv);
    att_ = f32(R * max_q);
    gate_ = f32(R * max_ffn);
    up_ = f32(R * max_ffn);
    lowp_ = arena_.allocate(static_cast<size_t>(R) * std::max({static_cast<int64_t>(d), static_cast<int64_t>(max_q), static_cast<int64_t>(max_ffn)}) * pb);
    // float32 weights are uploaded in place; the 16-bit precisions convert through this buffer
    staging_floats_ = o.precision == Precision::kF32 ? 0 : std::max<size_t>(max_matrix, static_cast<size_t>(d));
    staging_ = staging_floats_ ? f32(static_cast<int64_t>(staging_floats_)) : nullptr;
    cos_ = f32(static_cast<int64_t>(rope.cos.size()));
    sin_ = f32(static_cast<int64_t>(rope.sin.size()));
    // on the runner's own stream (a non-blocking stream does not wait for the legacy default stream's copies)
    check(cudaMemcpyAsync(cos_, rope.cos.data(), rope.cos.size() * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload rope");
    check(cudaMemcpyAsync(sin_, rope.sin.data(), rope.sin.size() * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload rope");
    check(cudaStreamSynchronize(stream_), "upload rope");
    pinned_ = std::make_unique<PinnedBuffer>(static_cast<size_t>(R) * std::max({static_cast<int64_t>(d), static_cast<int64_t>(max_q), static_cast<int64_t>(max_ffn)}));
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, o.device), "cudaGetDeviceProperties");
    if (o.gemm != GemmBackend::kOwnKernels) {
      std::string why;
      if (!blas_.create(&why) && o.gemm == GemmBackend::kCublas) throw CudaFailure{"cuBLAS was requested but is unavailable: " + why};
    }
    description_ = std::string(prop.name) + " (cuda:" + std::to_string(o.device) + "), " + precision_name(o.precision) + " matrix products, " +
                   (blas_.get() ? Cublas::get().description() : std::string("entroprune's own GEMM kernels"));
  }

  // Each call first makes this runner's GPU current: the multi-GPU driver calls it from a worker thread of
  // its own (a new thread starts on device 0).
  void load_block(int l, const LayerWeights& w) override {
    translated([&] {
      bind();
      upload_block(l, w);
      if (capture_) capture_->begin_block(l);
    });
  }
  void run(const BlockBatch& b) override {
    translated([&] {
      bind();
      run_block(b);
    });
  }

  void load_output_head(const float* norm, const float* output, int vocab) override {
    translated([&] {
      bind();
      free_block();
      const int64_t d = c_.dim, V = vocab;
      head_.norm = vec(norm, d);
      head_.matrix = matrix(output, V * d);
      head_.vocab = vocab;
      head_.chunk_rows = std::max<int64_t>(1, std::min<int64_t>(max_rows_, (int64_t(256) << 20) / (4 * V)));  // ≤ 256 MiB of logits
      head_.logits = f32(head_.chunk_rows * V);
      head_.nll = f32(max_rows_);
      head_.tokens = arena_.array<int32_t>(max_rows_);
      head_.argmax = arena_.array<int32_t>(max_rows_);
      check(cudaStreamSynchronize(stream_), "upload output head");
    });
  }
  void keep_reference(const BlockBatch& b) override {
    const int64_t N = static_cast<int64_t>(b.n_seqs) * seq_len_of(b);
    translated([&] {
      bind();
      const int V = head_.vocab;
      if (head_.matrix && head_.reference_rows != N) {
        arena_.release(head_.reference);
        arena_.release(head_.kl);
        head_.reference = nullptr, head_.kl = nullptr, head_.reference_rows = 0;
        head_.reference = f32(N * V);
        head_.kl = f32(N);
        head_.reference_rows = N;
      }
      // each chunk's logits straight into the reference, then log-softmax in place
      head_chunks(b, nullptr, "keep_reference", [&](int64_t r0, int64_t rows) { return head_.reference + r0 * V; },
                  [&](int64_t r0, int64_t rows, float* lg) { log_softmax_rows(lg, lg, rows, V, stream_); });
      check(cudaStreamSynchronize(stream_), "reference log-probabilities");
    });
  }
  void compare_with_reference(const BlockBatch& b, const int32_t* tokens, float* kl_host, float* nll_host) override {
    const int T = seq_len_of(b);
    const int64_t N = static_cast<int64_t>(b.n_seqs) * T;
    if (!head_.reference || head_.reference_rows != N)
      throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner::compare_with_reference without a reference of as many rows (keep_reference)");
    if (T < 2) throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner::compare_with_reference: sequences of at least 2 tokens");
    translated([&] {
      bind();
      const int V = head_.vocab;
      head_chunks(b, tokens, "compare_with_reference", [&](int64_t, int64_t) { return head_.logits; },
                  [&](int64_t r0, int64_t rows, float* lg) { kl_next_token_rows(lg, head_.reference + r0 * V, r0, rows, T, V, head_.tokens, head_.kl, head_.nll, stream_); });
      check(cudaMemcpyAsync(kl_host, head_.kl, N * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download divergences");
      check(cudaMemcpyAsync(nll_host, head_.nll, static_cast<int64_t>(b.n_seqs) * (T - 1) * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download loss");
      check(cudaStreamSynchronize(stream_), "divergence from the reference");
    });
  }
  void next_token_nll(const BlockBatch& b, const int32_t* tokens, float* nll_host, int32_t* argmax_host) override {
    const int T = seq_len_of(b);
    if (T < 2) throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner::next_token_nll: sequences of at least 2 tokens");
    translated([&] {
      bind();
      const int V = head_.vocab;
      head_chunks(b, tokens, "next_token_nll", [&](int64_t, int64_t) { return head_.logits; },
                  [&](int64_t r0, int64_t rows, float* lg) { next_token_nll_rows(lg, r0, rows, T, V, head_.tokens, head_.nll, argmax_host ? head_.argmax : nullptr, stream_); });
      const int64_t out = static_cast<int64_t>(b.n_seqs) * (T - 1);
      check(cudaMemcpyAsync(nll_host, head_.nll, out * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download loss");
      if (argmax_host)
        check(cudaMemcpyAsync(argmax_host, head_.argmax, out * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_), "download predictions");
      check(cudaStreamSynchronize(stream_), "next-token loss");
    });
  }

  bool hold_hidden_states(int64_t rows, bool room_for_output_head, int64_t reference_rows) override {
    bool held = false;
    translated([&] {
      bind();
      arena_.release(held_);
      held_ = nullptr;
      held_rows_ = 0;
      size_t free_bytes = 0, total_bytes = 0;
      check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
      const uint64_t need = (static_cast<uint64_t>(rows) * c_.dim + static_cast<uint64_t>(reference_rows) * (c_.vocab + 1)) * sizeof(float);
      // room for the largest block's weights or the output head (not loaded yet) and a margin for cuBLAS workspaces
      if (need + largest_load_bytes(room_for_output_head) + (uint64_t(512) << 20) > free_bytes) return;
      try {
        held_ = arena_.array<float>(rows * c_.dim);
      } catch (const CudaFailure&) {
        return;  // the estimate was optimistic: host batches after all (device_malloc left no error behind)
      }
      held_rows_ = rows;
      held = true;
    });
    return held;
  }
  void put_hidden(int64_t row0, const float* host, int64_t rows) override { copy_held(row0, rows, host, nullptr); }
  void get_hidden(int64_t row0, float* host, int64_t rows) override { copy_held(row0, rows, nullptr, host); }

  void enable_capture(const CaptureLayout& layout) override {
    // once per runner: its buffers come from the arena and live as long as the runner
    if (capture_) throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner::enable_capture called twice");
    translated([&] {
      bind();
      capture_ = std::make_unique<DeviceCapture>(c_, layout, max_rows_, arena_, &blas_, stream_);
      if (layer_ >= 0) capture_->begin_block(layer_);
    });
  }
  BlockStatistics take_statistics() override {
    if (!capture_) throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner::take_statistics without enable_capture");
    BlockStatistics s;
    translated([&] {
      bind();
      s = capture_->take();
    });
    return s;
  }
  std::string description() const override { return description_; }
  uint64_t peak_device_bytes() const override { return arena_.peak(); }

 private:
  // CUDA failures leave the runner as ep::Error, which the callers (and the addon) report.
  template <typename F>
  static void translated(F&& f) {
    try {
      f();
    } catch (const CudaFailure& e) {
      throw Error(ErrorCode::kUnsupported, "", "CUDA forward pass: " + e.message);
    }
  }
  void bind() { check(cudaSetDevice(o_.device), "cudaSetDevice"); }
  void upload_block(int l, const LayerWeights& w) {
    free_block();
    const LayerShape& s = c_.layers[l];
    const int64_t d = c_.dim, qd = static_cast<int64_t>(s.n_head) * c_.head_dim, kvd = static_cast<int64_t>(s.n_kv_head) * c_.head_dim;
    if (s.n_head > 0) {
      b_.attn_norm = vec(w.attn_norm, d);
      b_.wq = matrix(w.wq, qd * d);
      b_.wk = matrix(w.wk, kvd * d);
      b_.wv = matrix(w.wv, kvd * d);
      b_.wo = matrix(w.wo, d * qd);
      b_.bq = vec(w.bq, qd);
      b_.bk = vec(w.bk, kvd);
      b_.bv = vec(w.bv, kvd);
    }
    b_.bo = vec(w.bo, d);  // also a removed attention layer's compensation bias
    if (s.ffn > 0) {
      b_.ffn_norm = vec(w.ffn_norm, d);
      b_.w_gate = matrix(w.w_gate, s.ffn * d);
      b_.w_up = matrix(w.w_up, s.ffn * d);
      b_.w_down = matrix(w.w_down, d * s.ffn);
    }
    b_.b_down = vec(w.b_down, d);
    check(cudaStreamSynchronize(stream_), "upload block");
    layer_ = l;
  }

  void run_block(const BlockBatch& b) {
    const int l = layer_;
    if (l < 0) throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner::run before load_block");
    const LayerShape& s = c_.layers[l];
    const int n_seqs = b.n_seqs;
    const int T = seq_len_of(b);
    const int64_t N = static_cast<int64_t>(n_seqs) * T;
    const bool held = b.held_row0_valid();
    if (b.hooks && held) throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner::run: hooks need host rows");
    if (b.y_projected && !capture_) throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner::run: y_projected without enable_capture");
    ForwardHooks* hk = b.hooks;
    DeviceCapture* cap = b.y_projected ? capture_.get() : nullptr;
    float* const x_host = b.host;
    float* const x = batch_rows(b, N);  // the block's hidden states on the device, in place
    const int d = c_.dim, hd = c_.head_dim, qd = s.n_head * hd, kvd = s.n_kv_head * hd;
    const Precision p = o_.precision;
    if (hk) hk->block_input(l, x_host, N, d);
    if (!held) check(cudaMemcpyAsync(x, x_host, N * d * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload activations");
    if (cap) cap->block_input(x, N, b.y_projected);
    if (s.n_head > 0) {
      rmsnorm_rows(x, b_.attn_norm, lowp_, p, N, d, c_.norm_eps, stream_);
      linear(lowp_, b_.wq, b_.bq, q_, N, d, qd);
      linear(lowp_, b_.wk, b_.bk, k_, N, d, kvd);
      linear(lowp_, b_.wv, b_.bv, v_, N, d, kvd);
      const bool interleaved = c_.rope_layout == RopeLayout::kInterleaved;
      rope_rows(q_, N, T, s.n_head, hd, interleaved, cos_, sin_, stream_);
      rope_rows(k_, N, T, s.n_kv_head, hd, interleaved, cos_, sin_, stream_);
      causal_attention(q_, k_, v_, att_, n_seqs, T, s.n_head, s.n_kv_head, hd, c_.sliding_window, stream_);
      if (hk) hk->attn_heads(l, to_host(att_, N * qd), N, s.n_head, hd);
      if (cap) cap->attn_heads(att_, N);
      convert_from_f32(att_, lowp_, p, N * qd, stream_);
      linear(lowp_, b_.wo, b_.bo, tmp_, N, qd, d);
      if (hk) hk->attn_output(l, to_host(tmp_, N * d), N, d);
      if (cap) cap->attn_output(tmp_, N);
      add_rows(x, tmp_, N * d, stream_);
    } else if (b_.bo) {
      add_bias_rows(x, b_.bo, N, d, stream_);
    }
    if (s.ffn > 0) {
      const int f = s.ffn;
      rmsnorm_rows(x, b_.ffn_norm, lowp_, p, N, d, c_.norm_eps, stream_);
      linear(lowp_, b_.w_gate, nullptr, gate_, N, d, f);
      linear(lowp_, b_.w_up, nullptr, up_, N, d, f);
      swiglu_rows(gate_, up_, N * f, stream_);
      if (hk) hk->mlp_act(l, to_host(gate_, N * f), N, f);
      if (cap) cap->mlp_act(gate_, N);
      convert_from_f32(gate_, lowp_, p, N * f, stream_);
      linear(lowp_, b_.w_down, b_.b_down, tmp_, N, f, d);
      if (hk) hk->mlp_output(l, to_host(tmp_, N * d), N, d);
      if (cap) cap->mlp_output(tmp_, N);
      add_rows(x, tmp_, N * d, stream_);
    } else if (b_.b_down) {
      add_bias_rows(x, b_.b_down, N, d, stream_);
    }
    if (!held) check(cudaMemcpyAsync(x_host, x, N * d * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download activations");
    check(cudaStreamSynchronize(stream_), "block forward");
    if (cap) cap->block_output(x, N);
    if (hk) hk->block_output(l, x_host, N, d);
  }

  float* f32(int64_t n) { return static_cast<float*>(arena_.allocate(static_cast<size_t>(n) * sizeof(float))); }
  float* vec(const float* host, int64_t n) {
    if (!host) return nullptr;
    float* dev = f32(n);
    check(cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload weights");
    return dev;
  }
  // Host float32 matrix -> staging (float32) -> compute precision, in its own allocation; in pieces of the
  // staging buffer's size, which the output head may outgrow.
  void* matrix(const float* host, int64_t n) {
    const int pb = precision_bytes(o_.precision);
    void* dev = arena_.allocate(static_cast<size_t>(n) * pb);
    if (o_.precision == Precision::kF32) {
      check(cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload weights");
      return dev;
    }
    const int64_t piece = static_cast<int64_t>(staging_floats_);
    for (int64_t i0 = 0; i0 < n; i0 += piece) {
      const int64_t m = std::min(piece, n - i0);
      check(cudaMemcpyAsync(staging_, host + i0, m * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload weights");
      convert_from_f32(staging_, static_cast<char*>(dev) + i0 * pb, o_.precision, m, stream_);
    }
    return dev;
  }
  // Tokens per sequence of batch b: its own (at most the runner's, which the RoPE tables cover) or the runner's.
  int seq_len_of(const BlockBatch& b) const {
    if (b.seq_len < 0 || b.seq_len > T_)
      throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner: sequences longer than the runner was sized for");
    return b.seq_len ? b.seq_len : T_;
  }
  // Where batch b's N rows live on the device: the held states, or x_ for host rows (copied in by the caller).
  float* batch_rows(const BlockBatch& b, int64_t N) const {
    if (N > max_rows_) throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner: more rows than the runner was sized for");
    if (b.held_row0_valid() ? b.held_row0 + N > held_rows_ : !b.host)
      throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner: a batch needs host rows, or rows within the held hidden states");
    return b.held_row0_valid() ? held_ + b.held_row0 * c_.dim : x_;
  }
  void copy_held(int64_t row0, int64_t rows, const float* from_host, float* to_host_rows) {
    if (row0 < 0 || row0 + rows > held_rows_)
      throw Error(ErrorCode::kInvalidArgument, "", "BlockRunner: rows outside the held hidden states");
    translated([&] {
      bind();
      float* dev = held_ + row0 * c_.dim;
      const size_t bytes = static_cast<size_t>(rows) * c_.dim * sizeof(float);
      if (from_host) check(cudaMemcpyAsync(dev, from_host, bytes, cudaMemcpyHostToDevice, stream_), "upload hidden states");
      if (to_host_rows) check(cudaMemcpyAsync(to_host_rows, dev, bytes, cudaMemcpyDeviceToHost, stream_), "download hidden states");
      check(cudaStreamSynchronize(stream_), "copy hidden states");
    });
  }
  // The output head over a batch's final states, a chunk of rows at a time (the logits of a whole batch
  // would not fit): the rows uploaded when on the host, the tokens when given, the final norm, then for each
  // chunk the logits written where dest(r0, rows) says and handed to use(r0, rows, logits). Shared by
  // next_token_nll and the sensitivity's keep_reference / compare_with_reference. Call inside translated().
  template <typename Dest, typename Use>
  void head_chunks(const BlockBatch& b, const int32_t* tokens, const char* who, Dest dest, Use use) {
    if (!head_.matrix) throw Error(ErrorCode::kInvalidArgument, "", std::string("BlockRunner::") + who + " before load_output_head");
    const int64_t N = static_cast<int64_t>(b.n_seqs) * seq_len_of(b);
    const int d = c_.dim, V = head_.vocab;
    float* x = batch_rows(b, N);
    if (!b.held_row0_valid()) check(cudaMemcpyAsync(x, b.host, N * d * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload activations");
    if (tokens) check(cudaMemcpyAsync(head_.tokens, tokens, N * sizeof(int32_t), cudaMemcpyHostToDevice, stream_), "upload tokens");
    rmsnorm_rows(x, head_.norm, lowp_, o_.precision, N, d, c_.norm_eps, stream_);
    const int pb = precision_bytes(o_.precision);
    for (int64_t r0 = 0; r0 < N; r0 += head_.chunk_rows) {
      const int64_t rows = std::min(head_.chunk_rows, N - r0);
      float* lg = dest(r0, rows);
      linear(static_cast<const char*>(lowp_) + r0 * d * pb, head_.matrix, nullptr, lg, rows, d, V);
      use(r0, rows, lg);
    }
  }
  // Device bytes of the largest block's weights in the compute precision (what load_block will need), or —
  // with_head — of the output head with its logits and loss buffers if that is more (load_output_head).
  uint64_t largest_load_bytes(bool with_head) const {
    const uint64_t V = static_cast<uint64_t>(c_.vocab);
    uint64_t most = with_head ? V * c_.dim * precision_bytes(o_.precision) + (uint64_t(256) << 20) + static_cast<uint64_t>(max_rows_) * 12 + c_.dim * 4 : 0;
    for (const LayerShape& s : c_.layers) {
      const uint64_t qd = static_cast<uint64_t>(s.n_head) * c_.head_dim, kvd = static_cast<uint64_t>(s.n_kv_head) * c_.head_dim;
      const uint64_t elements = (2 * qd + 2 * kvd + 3 * static_cast<uint64_t>(s.ffn)) * c_.dim;
      most = std::max(most, elements * precision_bytes(o_.precision) + (qd + 2 * kvd + 4 * c_.dim) * sizeof(float));
    }
    return most;
  }
  void free_block() {
    cudaStreamSynchronize(stream_);
    for (void* p : {head_.matrix, static_cast<void*>(head_.norm), static_cast<void*>(head_.logits), static_cast<void*>(head_.nll),
                    static_cast<void*>(head_.tokens), static_cast<void*>(head_.argmax), static_cast<void*>(head_.reference),
                    static_cast<void*>(head_.kl)})
      arena_.release(p);
    head_ = OutputHead{};
    for (void* p : {b_.wq, b_.wk, b_.wv, b_.wo, b_.w_gate, b_.w_up, b_.w_down}) arena_.release(p);
    for (float* p : {b_.attn_norm, b_.ffn_norm, b_.bq, b_.bk, b_.bv, b_.bo, b_.b_down}) arena_.release(p);
    b_ = DeviceBlock{};
    layer_ = -1;
  }
  void linear(const void* x, const void* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out) {
    linear_on_device(x, w, bias, y, rows, in, out, o_.precision, &blas_, stream_);
  }
  // A hook tensor copied to pinned host memory; valid until the next to_host.
  const float* to_host(const float* dev, int64_t n) {
    check(cudaMemcpyAsync(pinned_->get(), dev, n * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download hook tensor");
    check(cudaStreamSynchronize(stream_), "download hook tensor");
    return pinned_->get();
  }

  ModelConfig c_;
  int T_;
  int64_t max_rows_;
  BlockRunnerOptions o_;
  cudaStream_t stream_ = nullptr;
  DeviceArena arena_;
  float *x_, *tmp_, *q_, *k_, *v_, *att_, *gate_, *up_, *staging_, *cos_, *sin_;
  void* lowp_;  // xn, attention output or SwiGLU activations in the compute precision (one at a time)
  std::unique_ptr<PinnedBuffer> pinned_;
  std::unique_ptr<DeviceCapture> capture_;  // the fused capture, after enable_capture
  float* held_ = nullptr;                   // hidden states held between blocks (hold_hidden_states)
  int64_t held_rows_ = 0;
  Cublas::Handle blas_;  // empty: entroprune's own GEMM kernels
  DeviceBlock b_;
  OutputHead head_;
  size_t staging_floats_ = 0;
  int layer_ = -1;
  std::string description_;
};

}  // namespace

std::unique_ptr<BlockRunner> BlockRunner::create(const ModelConfig& c, const RopeTables& rope, int seq_len, int64_t max_rows,
                                                 const BlockRunnerOptions& options) {
  const Probe p = probe();
  if (!p.available) throw Error(ErrorCode::kUnsupported, "", "CUDA requested, but " + p.unavailable);
  if (options.device < 0 || options.device >= static_cast<int>(p.devices.size()))
    throw Error(ErrorCode::kInvalidArgument, "", "no CUDA device cuda:" + std::to_string(options.device) + " (this machine has " +
                                                     std::to_string(p.devices.size()) + ")");
  if (c.head_dim > kMaxHeadDim || c.head_dim % 2)
    throw Error(ErrorCode::kUnsupported, "", "head_dim " + std::to_string(c.head_dim) + " is not supported by the CUDA forward pass (even, ≤ 256)");
  try {
    return std::make_unique<CudaBlockRunner>(c, rope, seq_len, max_rows, options);
  } catch (const CudaFailure& f) {
    throw Error(ErrorCode::kUnsupported, "", "CUDA forward pass: " + f.message);
  }
}

}  // namespace ep::cuda
