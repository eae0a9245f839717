#include "core/capture/capture.h"
#include "core/random.h"

#include <cblas.h>

#include <cmath>
#include <stdexcept>

extern "C" {
void dgeqrf_(const int* m, const int* n, double* a, const int* lda, double* tau, double* work, const int* lwork, int* info);
void dorgqr_(const int* m, const int* n, const int* k, double* a, const int* lda, const double* tau, double* work, const int* lwork,
             int* info);
}

namespace ep {

void ChannelStats::add(const float* x, int64_t rows, int k) {
  if (rows <= 0) return;
  if (n == 0) {
    for (int j = 0; j < k; ++j) shift[j] = x[j];  // first observation as shift: enough against cancellation
  }
#pragma omp parallel for schedule(static)
  for (int j = 0; j < k; ++j) {
    double s = 0, s2 = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const double v = static_cast<double>(x[r * k + j]) - shift[j];
      s += v;
      s2 += v * v;
    }
    sum[j] += s;
    sumsq[j] += s2;
  }
  n += rows;
}

void ChannelStats::merge(const ChannelStats& o) {
  if (o.n == 0) return;
  if (n == 0) {
    *this = o;
    return;
  }
  const double on = static_cast<double>(o.n);
  for (size_t j = 0; j < sum.size(); ++j) {
    const double d = o.shift[j] - shift[j];
    sumsq[j] += o.sumsq[j] + 2 * d * o.sum[j] + on * d * d;
    sum[j] += o.sum[j] + on * d;
  }
  n += o.n;
}

std::vector<double> ChannelStats::mean() const {
  std::vector<double> m(sum.size(), 0);
  for (size_t j = 0; j < sum.size() && n; ++j) m[j] = shift[j] + sum[j] / n;
  return m;
}

std::vector<double> ChannelStats::variance() const {
  std::vector<double> v(sum.size(), 0);
  for (size_t j = 0; j < sum.size() && n; ++j) v[j] = std::max(0.0, sumsq[j] / n - (sum[j] / n) * (sum[j] / n));
  return v;
}

// A d×r matrix with orthonormal columns: QR of a Gaussian matrix drawn from a portable generator.
static std::vector<float> random_orthogonal(int d, int r, uint64_t seed) {
  std::vector<double> a(static_cast<size_t>(d) * r);  // column-major d×r for LAPACK
  SplitMix64 rng{seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull};
  for (double& v : a) v = std::sqrt(-2 * std::log(rng.uniform())) * std::cos(6.283185307179586 * rng.uniform());
  std::vector<double> tau(r);
  int info = 0, lwork = -1;
  double wq;
  dgeqrf_(&d, &r, a.data(), &d, tau.data(), &wq, &lwork, &info);
  lwork = static_cast<int>(wq);
  std::vector<double> work(std::max(1, lwork));
  dgeqrf_(&d, &r, a.data(), &d, tau.data(), work.data(), &lwork, &info);
  if (info != 0) throw std::runtime_error("random projection: QR failed");
  lwork = -1;
  dorgqr_(&d, &r, &r, a.data(), &d, tau.data(), &wq, &lwork, &info);
  lwork = static_cast<int>(wq);
  work.assign(std::max(1, lwork), 0);
  dorgqr_(&d, &r, &r, a.data(), &d, tau.data(), work.data(), &lwork, &info);
  if (info != 0) throw std::runtime_error("random projection: Q formation failed");
  std::vector<float> out(static_cast<size_t>(d) * r);  // row-major d×r
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < r; ++j) out[static_cast<size_t>(i) * r + j] = static_cast<float>(a[static_cast<size_t>(j) * d + i]);
  return out;
}

StatisticsCapture::StatisticsCapture(const ModelConfig& config, const CaptureOptions& o) : config_(config), options_(o), d_(config.dim) {
  projected_ = d_ > o.max_dim;
  r_ = projected_ ? std::min(o.proj_dim, d_) : d_;
  if (r_ <= 0) throw std::invalid_argument("projection dimension must be positive");
  if (projected_) proj_ = random_orthogonal(d_, r_, o.seed);
  const int L = config.n_layers();
  products_ = o.products.value_or(4 * r_ <= CaptureOptions::kExactJointMax ? Accumulation::kFloat64 : Accumulation::kBlockedFloat32);
  block_.assign(L, Moments(4 * r_, products_));
  heads_.resize(L);
  channels_.resize(L);
  a_sum_.assign(L, std::vector<double>(d_, 0));
  m_sum_.assign(L, std::vector<double>(d_, 0));
  cos_sum_.assign(L, 0);
  for (int l = 0; l < L; ++l) {
    heads_[l].assign(config.layers[l].n_head, Moments(config.head_dim));
    channels_[l].init(config.layers[l].ffn);
  }
  h_buf_.resize(L);
  a_buf_.resize(L);
  m_buf_.resize(L);
}

void StatisticsCapture::project(const float* x, int64_t rows, float* out) const {
  if (!projected_) {
    std::copy(x, x + rows * d_, out);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), r_, d_, 1.0f, x, d_, proj_.data(), r_, 0.0f, out, r_);
}

void StatisticsCapture::block_input(int l, const float* h, int64_t rows, int dim) {
  rows_ = rows;
  for (auto* buf : {&h_buf_[l], &a_buf_[l], &m_buf_[l]}) buf->assign(static_cast<size_t>(rows) * r_, 0.0f);
  project(h, rows, h_buf_[l].data());
  h_in_.assign(h, h + rows * dim);
}

void StatisticsCapture::attn_heads(int l, const float* o, int64_t rows, int n_head, int head_dim) {
  const int64_t stride = static_cast<int64_t>(n_head) * head_dim;
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < n_head; ++h) heads_[l][h].add(o + static_cast<int64_t>(h) * head_dim, rows, stride);
}

void StatisticsCapture::attn_output(int l, const float* a, int64_t rows, int dim) {
  project(a, rows, a_buf_[l].data());
  for (int64_t r = 0; r < rows; ++r)
    for (int j = 0; j < dim; ++j) a_sum_[l][j] += a[r * dim + j];
}

void StatisticsCapture::mlp_act(int l, const float* act, int64_t rows, int ffn) { channels_[l].add(act, rows, ffn); }

void StatisticsCapture::mlp_output(int l, const float* m, int64_t rows, int dim) {
  project(m, rows, m_buf_[l].data());
  for (int64_t r = 0; r < rows; ++r)
    for (int j = 0; j < dim; ++j) m_sum_[l][j] += m[r * dim + j];
}

void StatisticsCapture::block_output(int l, const float* h, int64_t rows, int dim) {
  // Per-row cosines in parallel, summed in row order: the result must not depend on the thread count.
  std::vector<double> cos_row(rows);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0, na = 0, nb = 0;
    for (int j = 0; j < dim; ++j) {
      const double x = h_in_[r * dim + j], y = h[r * dim + j];
      dot += x * y;
      na += x * x;
      nb += y * y;
    }
    // A NaN or infinity anywhere in the row makes nb non-finite: flagged below, before it poisons the moments.
    cos_row[r] = std::isfinite(nb) ? dot / std::max(1e-30, std::sqrt(na * nb)) : std::nan("");
  }  for (int64_t r = 0; r < rows; ++r)
    if (std::isnan(cos_row[r])) throw NonFiniteActivations(l);

  for (double c : cos_row) cos_sum_[l] += c;
}

void StatisticsCapture::final_hidden(const float* y, int64_t rows, int dim) {
  std::vector<float> yp(static_cast<size_t>(rows) * r_);
  project(y, rows, yp.data());
  for (int l = 0; l < config_.n_layers(); ++l) fold_block(l, yp.data(), rows);
  add_tokens(rows);
}

void StatisticsCapture::fold_block(int l, const float* yp, int64_t rows) {
  joint_.resize(static_cast<size_t>(rows) * 4 * r_);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = &joint_[static_cast<size_t>(r) * 4 * r_];
    std::copy_n(&yp[r * r_], r_, row);
    std::copy_n(&h_buf_[l][r * r_], r_, row + r_);
    std::copy_n(&a_buf_[l][r * r_], r_, row + 2 * r_);
    std::copy_n(&m_buf_[l][r * r_], r_, row + 3 * r_);
  }
  block_[l].add(joint_.data(), rows, 4 * r_);
}

void StatisticsCapture::merge(const StatisticsCapture& o) {
  if (o.r_ != r_ || o.config_.n_layers() != config_.n_layers() || o.proj_ != proj_)
    throw std::invalid_argument("cannot merge captures of different models or projections");
  for (int l = 0; l < config_.n_layers(); ++l) {
    block_[l].merge(o.block_[l]);
    for (size_t h = 0; h < heads_[l].size(); ++h) heads_[l][h].merge(o.heads_[l][h]);
    channels_[l].merge(o.channels_[l]);
    for (int j = 0; j < d_; ++j) {
      a_sum_[l][j] += o.a_sum_[l][j];
      m_sum_[l][j] += o.m_sum_[l][j];
    }
    cos_sum_[l] += o.cos_sum_[l];
  }
  tokens_ += o.tokens_;
}

BlockStatistics StatisticsCapture::block_statistics(int l) const {
  BlockStatistics s;
  s.joint = block_[l].state();
  for (const Moments& h : heads_[l]) s.heads.push_back(h.state());
  s.channels = channels_[l];
  if (config_.layers[l].n_head > 0) s.attn_sum = a_sum_[l];
  if (config_.layers[l].ffn > 0) s.mlp_sum = m_sum_[l];
  s.cosine_sum = cos_sum_[l];
  return s;
}

void StatisticsCapture::absorb_block(int l, const BlockStatistics& s) {
  const LayerShape& shape = config_.layers[l];
  const auto sized = [](const std::vector<double>& v, size_t n) { return v.empty() || v.size() == n; };
  if (s.heads.size() != heads_[l].size() || !sized(s.attn_sum, d_) || !sized(s.mlp_sum, d_) ||
      (s.channels.n > 0 && s.channels.sum.size() != static_cast<size_t>(shape.ffn)))
    throw std::invalid_argument("absorb_block: statistics of block " + std::to_string(l) + " do not match its shape");
  block_[l].merge(Moments(4 * r_, products_, s.joint));
  for (size_t h = 0; h < heads_[l].size(); ++h) heads_[l][h].merge(Moments(config_.head_dim, Accumulation::kFloat64, s.heads[h]));
  channels_[l].merge(s.channels);
  for (size_t j = 0; j < s.attn_sum.size(); ++j) a_sum_[l][j] += s.attn_sum[j];
  for (size_t j = 0; j < s.mlp_sum.size(); ++j) m_sum_[l][j] += s.mlp_sum[j];
  cos_sum_[l] += s.cosine_sum;
}

std::vector<double> StatisticsCapture::attn_output_mean(int l) const {
  std::vector<double> m(d_, 0);
  for (int j = 0; j < d_ && tokens_; ++j) m[j] = a_sum_[l][j] / tokens_;
  return m;
}

std::vector<double> StatisticsCapture::mlp_output_mean(int l) const {
  std::vector<double> m(d_, 0);
  for (int j = 0; j < d_ && tokens_; ++j) m[j] = m_sum_[l][j] / tokens_;
  return m;
}

}  // namespace ep
