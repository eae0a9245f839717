// Prompt-pass products on bfloat16 weights: gemm_bf16 (the AMX tile unit on the stored bfloat16, activations
// rounded to bfloat16) against OpenBLAS sgemm on the float32 copies the model also holds, the same shapes side
// by side in one run (alternating, best of `repeats`); prints GFLOP/s and the ratio.
//   build-core/bench_gemm_bf16 [rows=256] [repeats=5]
// Shapes: LLaMA-2-7B's q/o (4096 → 4096), gate/up (4096 → 11008) and down (11008 → 4096).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/format/dtype.h"
#include "core/forward/gemm_bf16.h"
#include "core/forward/threads.h"

int main(int argc, char** argv) {
  const int rows = argc > 1 ? std::atoi(argv[1]) : 256;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
  ep::set_num_threads(0);
  if (!ep::gemm_bf16_available()) {
    std::printf("no AMX-BF16 here: nothing to compare\n");
    return 0;
  }
  std::mt19937 g(1);
  std::normal_distribution<float> n(0, 1);
  struct Shape {
    const char* name;
    int in, out;
  };
  for (const Shape s : {Shape{"q/o 4096->4096", 4096, 4096}, Shape{"gate/up 4096->11008", 4096, 11008}, Shape{"down 11008->4096", 11008, 4096}}) {
    std::vector<float> x(static_cast<size_t>(rows) * s.in), w(static_cast<size_t>(s.out) * s.in), y(static_cast<size_t>(rows) * s.out);
    std::vector<uint16_t> wb(w.size());
    for (float& v : x) v = n(g);
    for (size_t i = 0; i < w.size(); ++i) wb[i] = ep::f32_to_bf16(n(g)), w[i] = ep::bf16_to_f32(wb[i]);
    double best_s = 1e30, best_b = 1e30;
    for (int i = 0; i < repeats; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, s.out, s.in, 1.0f, x.data(), s.in, w.data(), s.in, 0.0f, y.data(), s.out);
      auto t1 = std::chrono::steady_clock::now();
      ep::gemm_bf16(x.data(), wb.data(), y.data(), rows, s.in, s.out);
      auto t2 = std::chrono::steady_clock::now();
      best_s = std::min(best_s, std::chrono::duration<double>(t1 - t0).count());
      best_b = std::min(best_b, std::chrono::duration<double>(t2 - t1).count());
    }
    const double flop = 2.0 * rows * s.in * s.out;
    std::printf("%-22s rows %d: sgemm %.0f GFLOP/s, gemm_bf16 %.0f GFLOP/s, ratio %.2fx\n", s.name, rows, flop / best_s / 1e9, flop / best_b / 1e9,
                best_s / best_b);
  }
  return 0;
}
