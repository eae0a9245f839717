// One launch of one GPU kernel on host buffers, for the table-driven agreement suite (native/tests/test_cuda.cpp,
// in the spirit of llama.cpp's test-backend-ops): every block kernel against its CPU twin, one table row per
// kernel and shape. Plain C++ so the tests compile without nvcc (kernel_check_stub.cpp says "no CUDA").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ep::cuda {

// kernel: "rmsnorm", "convert_bf16", "convert_f16", "rope_interleaved", "rope_half", "attention", "swiglu",
// "add", "add_bias", "next_token_nll", "log_softmax", "kl_next_token". in: the kernel's float inputs in the order block_kernels.cuh lists
// them; dims: its sizes (see kernel_check.cu per kernel); ids: token ids where the kernel reads them.
struct KernelCall {
  std::string kernel;
  std::vector<std::vector<float>> in;
  std::vector<int64_t> dims;
  std::vector<int32_t> ids;
};

// Fills out with the kernel's output (for next_token_nll: the losses, then the argmax ids as floats; for
// kl_next_token: the per-row KL, then the losses).
// Returns false with *error when CUDA cannot run it or the kernel name is unknown.
bool run_kernel(const KernelCall& call, std::vector<float>& out, std::string* error);

}  // namespace ep::cuda
