// CUDA kernels against their CPU twins. Without a GPU (CI) only the probe is checked: it must report the
// reason cleanly instead of crashing; the agreement tests skip with that reason.
#include <cmath>
#include <random>

#include "core/ops_cpu.h"
#include "cuda/cuda_runtime_api.h"
#include "test_util.h"

using namespace ep;

TEST(Cuda, ProbeNeverCrashes) {
  cuda::Probe p = cuda::probe();
  EXPECT_FALSE(p.message.empty());
  if (!p.available) EXPECT_NE(p.message.find("CPU"), std::string::npos) << p.message;
#ifdef ENTROPRUNE_WITH_CUDA
  EXPECT_TRUE(p.compiled);
#else
  EXPECT_FALSE(p.compiled);
#endif
}

TEST(Cuda, RmsnormMatchesCpuTwin) {
  const int rows = 300, dim = 1000;
  std::mt19937 g(3);
  std::normal_distribution<float> n(0, 3);
  std::vector<float> x(rows * dim), w(dim), ycpu(rows * dim), ygpu(rows * dim);
  for (float& v : x) v = n(g);
  for (float& v : w) v = 1 + 0.1f * n(g);
  rmsnorm_cpu(x.data(), w.data(), ycpu.data(), rows, dim, 1e-5f);
  std::string err;
  if (!cuda::rmsnorm(x.data(), w.data(), ygpu.data(), rows, dim, 1e-5f, &err)) {
    EXPECT_FALSE(err.empty());
    GTEST_SKIP() << "no GPU: " << err;
  }
  for (int i = 0; i < rows * dim; ++i) ASSERT_NEAR(ygpu[i], ycpu[i], 1e-5 * std::max(1.0f, std::abs(ycpu[i])));
}
