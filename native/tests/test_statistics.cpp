// Estimators against closed forms; streaming, merging and batching give the same accumulators.
#include <cmath>
#include <random>

#include "core/measure/gaussian_entropy.h"
#include "core/capture/moments.h"
#include "test_util.h"

using namespace ep;

static const double kLog2PiE = std::log(2 * M_PI * M_E);

TEST(GaussianEntropy, DiagonalAndCorrelatedClosedForms) {
  std::vector<double> diag{4, 0, 0, 0, 0.25, 0, 0, 0, 9};
  EXPECT_NEAR(gaussian_entropy(diag, 3, 0), 0.5 * (3 * kLog2PiE + std::log(4 * 0.25 * 9)), 1e-12);
  const double s1 = 2, s2 = 3, rho = 0.6;
  std::vector<double> c{s1 * s1, rho * s1 * s2, rho * s1 * s2, s2 * s2};
  EXPECT_NEAR(gaussian_entropy(c, 2, 0), 0.5 * (2 * kLog2PiE + std::log(s1 * s1 * s2 * s2 * (1 - rho * rho))), 1e-12);
  // H(z|w) for scalars: ½ log(2πe σ_z² (1 − ρ²))
  EXPECT_NEAR(conditional_entropy(c, 2, {0}, {1}, 0), 0.5 * (kLog2PiE + std::log(s1 * s1 * (1 - rho * rho))), 1e-12);
  EXPECT_NEAR(joint_entropy(c, 2, {1}, 0), 0.5 * (kLog2PiE + std::log(s2 * s2)), 1e-12);
}

TEST(GaussianEntropy, TransferEntropyOfLinearGaussianSystem) {
  // y = a·x + b·z + e; x, z ~ N(0,1) independent, e ~ N(0, s²):  I(y; x | z) = ½ log((a² + s²) / s²).
  const double a = 1.5, b = -0.7, s = 0.4;
  // Exact covariance of (y, x, z).
  std::vector<double> cov{a * a + b * b + s * s, a, b, a, 1, 0, b, 0, 1};
  const double exact = 0.5 * std::log((a * a + s * s) / (s * s));
  EXPECT_NEAR(conditional_mutual_information(cov, 3, {0}, {1}, {2}, 0), exact, 1e-12);
  // And from streamed samples: sampling error only.
  std::mt19937_64 g(11);
  std::normal_distribution<double> n(0, 1);
  Moments m(3);
  std::vector<double> rows;
  for (int batch = 0; batch < 50; ++batch) {
    rows.clear();
    for (int i = 0; i < 4000; ++i) {
      const double x = n(g), z = n(g), y = a * x + b * z + s * n(g);
      rows.insert(rows.end(), {y + 100, x - 50, z + 3});  // large means: exercises the shifted sums
    }
    m.add(rows.data(), 4000, 3);
  }
  EXPECT_NEAR(conditional_mutual_information(m.covariance(), 3, {0}, {1}, {2}), exact, 0.01);
  // Conditioning on the other cause removes nothing from x's contribution; x independent of z: I(x;z) ≈ 0.
  EXPECT_NEAR(joint_entropy(m.covariance(), 3, {1}) + joint_entropy(m.covariance(), 3, {2}) - joint_entropy(m.covariance(), 3, {1, 2}), 0, 0.002);
}

TEST(GaussianEntropy, RidgeHandlesRankDeficiencyAndReportsItsEffect) {
  std::vector<double> singular{1, 1, 1, 1};  // rank 1
  LogDet r = log_det_spd(singular, 2);
  EXPECT_TRUE(std::isfinite(r.value));
  EXPECT_TRUE(std::isnan(r.ridge_effect));  // Σ itself has no Cholesky factor
  std::vector<double> fine{2, 0.5, 0.5, 1};
  EXPECT_LT(log_det_spd(fine, 2).ridge_effect, 1e-5);
}

static std::vector<float> random_rows(int n, int d, int seed, float mean) {
  std::mt19937 g(seed);
  std::normal_distribution<float> dist(mean, 2);
  std::vector<float> x(static_cast<size_t>(n) * d);
  for (float& v : x) v = dist(g);
  return x;
}

TEST(Moments, StreamEqualsBatchAndMergeEqualsOnePass) {
  const int n = 3000, d = 17;
  auto x = random_rows(n, d, 5, 1000.0f);
  Moments once(d), stream(d), a(d), b(d);
  once.add(x.data(), n, d);
  for (int r = 0; r < n; r += 123) stream.add(x.data() + static_cast<size_t>(r) * d, std::min(123, n - r), d);
  a.add(x.data(), 1000, d);
  b.add(x.data() + 1000 * d, n - 1000, d);  // different shift from a
  a.merge(b);
  // Reference: two-pass float64 covariance.
  std::vector<double> mu(d, 0), ref(static_cast<size_t>(d) * d, 0);
  for (int r = 0; r < n; ++r)
    for (int j = 0; j < d; ++j) mu[j] += x[static_cast<size_t>(r) * d + j] / static_cast<double>(n);
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j)
        ref[static_cast<size_t>(i) * d + j] += (x[static_cast<size_t>(r) * d + i] - mu[i]) * (x[static_cast<size_t>(r) * d + j] - mu[j]) / n;
  for (const Moments* m : {&once, &stream, &a}) {
    EXPECT_EQ(m->count(), n);
    auto c = m->covariance();
    auto mm = m->mean();
    for (int j = 0; j < d; ++j) EXPECT_NEAR(mm[j], mu[j], 1e-9 * 1000);
    for (size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(c[i], ref[i], 1e-9) << i;
  }
}

TEST(Moments, StridedColumnsSelectASubVector) {
  const int n = 500, d = 8;
  auto x = random_rows(n, d, 9, 0.0f);
  Moments full(d), tail(3);
  full.add(x.data(), n, d);
  tail.add(x.data() + 5, n, d);  // columns 5..7 via the row stride
  auto cf = full.covariance(), ct = tail.covariance();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(ct[i * 3 + j], cf[(5 + i) * d + 5 + j], 1e-10);
}

TEST(Moments, BlockedFloat32AgreesWithFloat64) {
  const int n = 9000, d = 40;  // two full 4096-row float blocks and a partial one
  auto x = random_rows(n, d, 13, 50.0f);
  Moments exact(d), fast(d, Accumulation::kBlockedFloat32), fast2(d, Accumulation::kBlockedFloat32), part(d, Accumulation::kBlockedFloat32);
  exact.add(x.data(), n, d);
  fast.add(x.data(), n, d);
  fast2.add(x.data(), 4700, d);
  part.add(x.data() + 4700 * d, n - 4700, d);
  fast2.merge(part);
  auto ce = exact.covariance();
  for (const Moments* m : {&fast, &fast2}) {
    auto c = m->covariance();
    for (size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(c[i], ce[i], 2e-6 * std::max(1.0, std::abs(ce[i])));
  }
}

// Raw state summed elsewhere (the GPU's fused capture) around a shift of its own choosing merges into an
// accumulator exactly as the accumulator's own pass would: here the state is summed by hand around c = 0
// and around c = 7 (any shift, as the header promises), and merged after a first part with its own shift.
TEST(Moments, RawStateAroundAnyShiftMergesLikeOnePass) {
  const int n = 2000, d = 6, split = 700;
  auto x = random_rows(n, d, 17, 40.0f);
  Moments once(d);
  once.add(x.data(), n, d);
  for (double c : {0.0, 7.0}) {
    MomentState st;
    st.n = n - split;
    st.shift.assign(d, c);
    st.sum.assign(d, 0.0);
    st.cross.assign(static_cast<size_t>(d) * d, 0.0);
    for (int r = split; r < n; ++r)
      for (int i = 0; i < d; ++i) {
        const double xi = x[static_cast<size_t>(r) * d + i] - c;
        st.sum[i] += xi;
        for (int j = 0; j < d; ++j) st.cross[static_cast<size_t>(i) * d + j] += xi * (x[static_cast<size_t>(r) * d + j] - c);
      }
    Moments first(d);
    first.add(x.data(), split, d);
    first.merge(Moments(d, Accumulation::kFloat64, st));
    EXPECT_EQ(first.count(), n);
    const auto a = first.covariance(), b = once.covariance();
    const auto ma = first.mean(), mb = once.mean();
    for (int j = 0; j < d; ++j) EXPECT_NEAR(ma[j], mb[j], 1e-10 * 40);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-8) << "shift " << c << " at " << i;
    // and the state round-trips
    const MomentState back = Moments(d, Accumulation::kFloat64, st).state();
    EXPECT_EQ(back.sum, st.sum);
    EXPECT_EQ(back.cross, st.cross);
  }
  MomentState bad;
  bad.n = 1;
  bad.shift.assign(d, 0.0);
  bad.sum.assign(d, 0.0);
  bad.cross.assign(d, 0.0);  // d values, not d²
  EXPECT_THROW(Moments(d, Accumulation::kFloat64, bad), std::invalid_argument);
}

TEST(GaussianEntropy, OneRidgeServesEveryTermOfAConditionalMutualInformation) {
  // (y, x, z) with very different scales: the CMI must be that of the one regularised joint Σ + cI,
  // c = ridge · tr Σ / 3, computed here by hand from scalar conditional variances.
  const double sy = 1e3, a = 0.8, b = 0.3;
  // y = sy·(a x + b z + e), x, z, e ~ N(0, 1) independent
  std::vector<double> cov{sy * sy * (a * a + b * b + 1), sy * a, sy * b, sy * a, 1, 0, sy * b, 0, 1};
  const double ridge = 1e-3, c = ridge * (cov[0] + cov[4] + cov[8]) / 3;
  std::vector<double> R = cov;
  for (int i = 0; i < 3; ++i) R[i * 3 + i] += c;
  // var(y | z) and var(y | z, x) of R: Schur complements
  const double vyz = R[0] - R[2] * R[2] / R[8];
  const double det_xz = R[4] * R[8] - R[5] * R[7];
  const double vyzx = R[0] - (R[1] * (R[8] * R[1] - R[5] * R[2]) + R[2] * (R[4] * R[2] - R[7] * R[1])) / det_xz;
  EXPECT_NEAR(conditional_mutual_information(cov, 3, {0}, {1}, {2}, ridge), 0.5 * std::log(vyz / vyzx), 1e-9);
  // One regularised Gaussian: never negative, even where per-term ridges would disagree.
  EXPECT_GE(conditional_mutual_information(cov, 3, {0}, {2}, {1}, 0.1), 0.0);
}

TEST(GaussianEntropy, StreamTransferEntropyClosedForm) {
  // h ~ N(0, s²I₂), x = B h + e, e ~ N(0, diag(e1, e2)): Σ_{x|h} = diag(e1, e2), σ̄² = s², so
  // TE = ½ Σ log(1 + e_i / (ρ s²)), whatever B is.
  const double s2 = 4, e1 = 0.5, e2 = 2, rho = 0.1;
  const double B[2][2] = {{1.5, -0.4}, {0.2, 0.7}};
  // joint (h1, h2, x1, x2)
  std::vector<double> cov(16, 0.0);
  cov[0] = cov[5] = s2;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      cov[j * 4 + 2 + i] = cov[(2 + i) * 4 + j] = B[i][j] * s2;  // cov(x_i, h_j)
      cov[(2 + i) * 4 + 2 + j] = s2 * (B[i][0] * B[j][0] + B[i][1] * B[j][1]) + (i == j ? (i ? e2 : e1) : 0);
    }
  const double exact = 0.5 * (std::log(1 + e1 / (rho * s2)) + std::log(1 + e2 / (rho * s2)));
  EXPECT_NEAR(stream_transfer_entropy(cov, 4, {2, 3}, {0, 1}, rho, 0), exact, 1e-10);
  // x fully determined by h carries nothing new: TE → 0
  std::vector<double> det = cov;
  det[10] -= e1;
  det[15] -= e2;
  EXPECT_NEAR(stream_transfer_entropy(det, 4, {2, 3}, {0, 1}, rho, 1e-12), 0.0, 1e-6);
}
