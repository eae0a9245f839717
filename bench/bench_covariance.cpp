// Covariance accumulation throughput: entroprune's Moments::add in both product precisions — blocked float32
// (ssyrk per 4096 shifted rows, summed into float64; analyze's default for joint vectors wider than 1024) and
// float64 (dsyrk; --products float64, and the default up to 1024 wide) — against a plain OpenBLAS ssyrk on the
// same float matrices, measured side by side in one run; prints the ratios (target for the default: ≥ 0.8).
//   build-core/bench_covariance [k=2048] [rows=4096] [repeats=5]
// k = 2048 is the joint (y, h, a, m) width at the default projection (4 × 512).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/capture/moments.h"
#include "core/forward/threads.h"

int main(int argc, char** argv) {
  const int k = argc > 1 ? std::atoi(argv[1]) : 2048;
  const int rows = argc > 2 ? std::atoi(argv[2]) : 4096;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
  ep::set_num_threads(0);
  std::vector<float> x(static_cast<size_t>(rows) * k);
  std::mt19937 g(1);
  std::normal_distribution<float> n(0.5f, 1);
  for (float& v : x) v = n(g);
  std::vector<float> c(static_cast<size_t>(k) * k, 0.0f);
  ep::Moments m(k, ep::Accumulation::kBlockedFloat32), exact(k);
  auto time = [&](auto&& f) {
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      f();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  m.add(x.data(), rows, k);  // warm-up (and fixes the shift)
  exact.add(x.data(), rows, k);
  double ours = 0, blas = 0, ours64 = 0;
  for (int round = 0; round < 3; ++round) {  // alternate to share the machine's noise
    ours += time([&] { m.add(x.data(), rows, k); });
    ours64 += time([&] { exact.add(x.data(), rows, k); });
    blas += time([&] {
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, k, rows, 1.0f, x.data(), k, 1.0f, c.data(), k);
    });
  }
  const double flops = static_cast<double>(rows) * k * (k + 1);  // syrk: n·k(k+1) flops
  std::printf("k=%d rows=%d threads=%d: OpenBLAS ssyrk %.1f GFLOP/s | entroprune blocked-float32 (%s) %.1f GFLOP/s, "
              "ratio %.2f | entroprune float64 (dsyrk, %s) %.1f GFLOP/s, ratio %.2f\n",
              k, rows, ep::num_threads(), 3 * flops / blas / 1e9, k > 1024 ? "analyze's default at this width" : "--products float32",
              3 * flops / ours / 1e9, blas / ours, k > 1024 ? "--products float64" : "analyze's default at this width", 3 * flops / ours64 / 1e9,
              blas / ours64);
  return 0;
}
