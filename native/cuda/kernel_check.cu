// run_kernel (kernel_check.h): upload the inputs, launch one kernel of block_kernels.cuh, download its output.
#include "cuda/block_kernels.cuh"
#include "cuda/device_memory.cuh"
#include "cuda/kernel_check.h"

#include <cuda_fp16.h>

#include <cstring>

namespace ep::cuda {

namespace {

// A device copy of a host vector (DeviceBuffer is neither copied nor moved: the buffer is built in place).
struct DeviceCopy : DeviceBuffer<float> {
  explicit DeviceCopy(const std::vector<float>& v) : DeviceBuffer<float>(v.size()) { upload(v.data()); }
};

std::vector<float> download(const DeviceBuffer<float>& d) {
  std::vector<float> h(d.size());
  d.download(h.data());
  return h;
}

}  // namespace

bool run_kernel(const KernelCall& c, std::vector<float>& out, std::string* error) {
  return run_on_gpu(error, [&] {
    const std::string& k = c.kernel;
    if (k == "rmsnorm") {  // in: x [rows, dim], w [dim]; dims: rows, dim
      DeviceCopy x(c.in[0]);
      DeviceCopy w(c.in[1]);
      DeviceBuffer<float> y(c.in[0].size());
      rmsnorm_rows(x.get(), w.get(), y.get(), Precision::kF32, c.dims[0], static_cast<int>(c.dims[1]), 1e-5f, nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      out = download(y);
    } else if (k == "convert_bf16" || k == "convert_f16") {  // in: x [n]; out: the rounded values back in float32
      const Precision p = k == "convert_bf16" ? Precision::kBF16 : Precision::kF16;
      const int64_t n = static_cast<int64_t>(c.in[0].size());
      DeviceCopy x(c.in[0]);
      DeviceBuffer<uint16_t> y(n);
      convert_from_f32(x.get(), y.get(), p, n, nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      std::vector<uint16_t> h(n);
      y.download(h.data());
      out.resize(n);
      for (int64_t i = 0; i < n; ++i) {
        // bf16: the high half of a float32; f16: IEEE half, widened exactly
        if (p == Precision::kBF16) {
          const uint32_t bits = static_cast<uint32_t>(h[i]) << 16;
          std::memcpy(&out[i], &bits, 4);
        } else {
          out[i] = __half2float(*reinterpret_cast<const __half*>(&h[i]));
        }
      }
    } else if (k == "rope_interleaved" || k == "rope_half") {  // in: x [rows, nh*hd], cos, sin [period, hd/2]; dims: rows, period, nh, hd
      DeviceCopy x(c.in[0]);
      DeviceCopy cs(c.in[1]);
      DeviceCopy sn(c.in[2]);
      rope_rows(x.get(), c.dims[0], static_cast<int>(c.dims[1]), static_cast<int>(c.dims[2]), static_cast<int>(c.dims[3]), k == "rope_interleaved", cs.get(), sn.get(),
                nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      out = download(x);
    } else if (k == "attention") {  // in: q, k, v; dims: n_seqs, seq_len, n_head, n_kv_head, head_dim, window
      DeviceCopy q(c.in[0]);
      DeviceCopy kk(c.in[1]);
      DeviceCopy v(c.in[2]);
      DeviceBuffer<float> o(c.in[0].size());
      causal_attention(q.get(), kk.get(), v.get(), o.get(), static_cast<int>(c.dims[0]), static_cast<int>(c.dims[1]), static_cast<int>(c.dims[2]),
                       static_cast<int>(c.dims[3]), static_cast<int>(c.dims[4]), static_cast<int>(c.dims[5]), nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      out = download(o);
    } else if (k == "swiglu") {  // in: gate, up [n]
      DeviceCopy g(c.in[0]);
      DeviceCopy u(c.in[1]);
      swiglu_rows(g.get(), u.get(), static_cast<int64_t>(c.in[0].size()), nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      out = download(g);
    } else if (k == "add") {  // in: x, y [n]
      DeviceCopy x(c.in[0]);
      DeviceCopy y(c.in[1]);
      add_rows(x.get(), y.get(), static_cast<int64_t>(c.in[0].size()), nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      out = download(x);
    } else if (k == "add_bias") {  // in: x [rows, n], b [n]; dims: rows, n
      DeviceCopy x(c.in[0]);
      DeviceCopy b(c.in[1]);
      add_bias_rows(x.get(), b.get(), c.dims[0], static_cast<int>(c.dims[1]), nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      out = download(x);
    } else if (k == "next_token_nll") {  // in: logits [rows, V]; ids: tokens [rows]; dims: rows, T, V
      const int64_t rows = c.dims[0];
      const int T = static_cast<int>(c.dims[1]), V = static_cast<int>(c.dims[2]);
      const int64_t losses = rows / T * (T - 1);
      DeviceCopy lg(c.in[0]);
      DeviceBuffer<float> nll(losses);
      DeviceBuffer<int32_t> toks(c.ids.size()), arg(losses);
      toks.upload(c.ids.data());
      next_token_nll_rows(lg.get(), 0, rows, T, V, toks.get(), nll.get(), arg.get(), nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      out = download(nll);
      std::vector<int32_t> a(losses);
      arg.download(a.data());
      for (int32_t x : a) out.push_back(static_cast<float>(x));
    } else if (k == "log_softmax") {  // in: logits [rows, V]; dims: rows, V
      DeviceCopy lg(c.in[0]);
      log_softmax_rows(lg.get(), lg.get(), c.dims[0], static_cast<int>(c.dims[1]), nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      out = download(lg);
    } else if (k == "kl_next_token") {  // in: logits, reference log-probabilities [rows, V]; ids: tokens; dims: rows, T, V; out: KL then losses
      const int64_t rows = c.dims[0];
      const int T = static_cast<int>(c.dims[1]), V = static_cast<int>(c.dims[2]);
      DeviceCopy lg(c.in[0]);
      DeviceCopy ref(c.in[1]);
      DeviceBuffer<float> kl(rows), nll(rows / T * (T - 1));
      DeviceBuffer<int32_t> toks(c.ids.size());
      toks.upload(c.ids.data());
      kl_next_token_rows(lg.get(), ref.get(), 0, rows, T, V, toks.get(), kl.get(), nll.get(), nullptr);
      check(cudaDeviceSynchronize(), k.c_str());
      out = download(kl);
      const std::vector<float> losses = download(nll);
      out.insert(out.end(), losses.begin(), losses.end());
    } else {
      throw CudaFailure{"run_kernel: unknown kernel '" + k + "'"};
    }
  });
}

}  // namespace ep::cuda
