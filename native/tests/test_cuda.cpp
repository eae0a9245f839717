// CUDA kernels against their CPU twins. Without a GPU (CI) only the probe is checked: it must report the
// reason cleanly instead of crashing; the agreement tests skip with that reason.
#include <cmath>
#include <random>

#include "core/ops_cpu.h"
#include "cuda/cuda_runtime_api.h"
#include "test_util.h"

using namespace ep;

// On the GPU machine a missing GPU is a failure, not a skip.
#define SKIP_OR_FAIL_WITHOUT_GPU(err)                                              \
  do {                                                                             \
    const char* req = std::getenv("ENTROPRUNE_REQUIRE_GPU");                       \
    if (req && std::string(req) == "1") FAIL() << "GPU required but unusable: " << (err); \
    GTEST_SKIP() << "no GPU: " << (err);                                           \
  } while (0)

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
    SKIP_OR_FAIL_WITHOUT_GPU(err);
  }
  for (int i = 0; i < rows * dim; ++i) ASSERT_NEAR(ygpu[i], ycpu[i], 1e-5 * std::max(1.0f, std::abs(ycpu[i])));
}

#include "core/moments.h"

TEST(Cuda, MomentAccumulationMatchesCpuTwin) {
  const int n = 777, k = 70;  // k not a multiple of the 32-wide tile
  std::mt19937 g(5);
  std::normal_distribution<float> dist(3, 2);
  std::vector<float> x(static_cast<size_t>(n) * k);
  for (float& v : x) v = dist(g);
  Moments cpu(k);
  cpu.add(x.data(), n, k);  // shift = mean of this first batch
  std::vector<double> sum(k, 0.0), cross(static_cast<size_t>(k) * k, 0.0);
  std::string err;
  if (!cuda::accumulate_moments(x.data(), n, k, cpu.shift().data(), sum.data(), cross.data(), &err)) {
    EXPECT_FALSE(err.empty());
    SKIP_OR_FAIL_WITHOUT_GPU(err);
  }
  for (int i = 0; i < k; ++i) {
    ASSERT_NEAR(sum[i], cpu.shifted_sum()[i], 1e-9);
    for (int j = i; j < k; ++j) ASSERT_NEAR(cross[i * k + j], cpu.shifted_cross()[i * k + j], 1e-9 * n);
  }
}
