// Compiled instead of the .cu files when the build has no nvcc: every CUDA entry point says so.
#include "core/device/cuda_api.h"

namespace ep::cuda {

Probe probe() {
  Probe p;
  p.unavailable = "this build of entroprune has no CUDA support (built without nvcc)";
  p.message = p.unavailable + ": using the CPU";
  return p;
}

bool rmsnorm(const float*, const float*, float*, int64_t, int, float, std::string* error) {
  if (error) *error = probe().message;
  return false;
}

bool accumulate_moments(const float*, int64_t, int, const double*, double*, double*, std::string* error) {
  if (error) *error = probe().message;
  return false;
}

bool linear(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t, Precision, GemmBackend, std::string* error) {
  if (error) *error = probe().message;
  return false;
}

float* alloc_pinned_floats(uint64_t) { return nullptr; }
void free_pinned(float*) {}

std::string gemm_backend_description() { return "none (built without CUDA)"; }

}  // namespace ep::cuda
