// Small vectorizable kernels for the forward pass's hot loops (softmax, attention, log-sum-exp).
// Written as plain loops that GCC auto-vectorizes; `target_clones` adds an AVX2+FMA version chosen at
// load time, so one prebuilt binary runs on any x86-64 and fast on modern ones.
#pragma once
#include <cstdint>

namespace ep::simd {

// y[0..n) += a · x[0..n)
void axpy(float a, const float* x, float* y, int n);
// Σ a[i]·b[i]
float dot(const float* a, const float* b, int n);
// max of x[0..n), n > 0
float max(const float* x, int n);
// x[i] = exp(x[i] − shift) in place; returns Σ x[i]. Cephes-style expf (≈1 ulp), vectorizable, unlike libm's.
float exp_shift_sum(float* x, int n, float shift);
// Σ exp(x[i] − shift) without writing x (for log-sum-exp over a vocabulary).
double sum_exp_shift(const float* x, int n, float shift);

}  // namespace ep::simd
