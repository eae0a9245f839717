#include "core/forward/gemm_bf16.h"

// The tile intrinsics need x86-64 Linux and GCC 11 / Clang 12 or later; elsewhere the kernel is absent and
// gemm_bf16_available() says so (linear() then uses BLAS).
#if defined(__x86_64__) && defined(__linux__) && ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define EP_HAVE_AMX 1
#endif

#ifdef EP_HAVE_AMX
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/forward/threads.h"

namespace ep {

#ifdef EP_HAVE_AMX
namespace {

#define EP_AMX_TARGET __attribute__((target("amx-tile,amx-bf16")))

// The tile unit computes C[16×16] += A[16 × 32 bfloat16] · B, B given as 16 rows of input pairs × 16 columns.
// We compute yᵀ = W · xᵀ so that A is W itself: 16 weight rows × 32 inputs, read in place with the row stride
// (W is never repacked). B is the activations, rounded and laid out as [row block of 16][input pair][16 rows]
// 32-bit words — the only packing, done while rounding. A micro-step covers 32 outputs × 32 activation rows:
// tiles 0–3 accumulate C, 4–5 hold W, 6–7 hold x. Each thread owns a share of the 32-output panels and passes
// over them once per block of activation rows that stays in its L2 (at most kRowBlockBytes of rounded
// activations, at most kMaxRowBlock rows: 128 at 4096 inputs, 32 at 11008 — with 128 there, 2.8 MiB, the
// down projection ran at 415 against 919 GFLOP/s for the 4096-input shapes) while its weight panels stream by.
constexpr int64_t kTile = 16, kStep = 32, kRowBlockBytes = int64_t{1} << 20, kMaxRowBlock = 128;

struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

TileConfig tile_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) c.rows[t] = 16, c.colsb[t] = 64;
  return c;
}

// x rows rounded to bfloat16 (nearest even) into the B layout: block b = rows [16b, 16b+16), word
// (b · pairs + p) · 16 + r%16 holds inputs (2p, 2p+1) of row r; rows past `rows` and inputs past `in` zero.
// (AVX512-BF16's conversion: every CPU with AMX-BF16 has it.)
__attribute__((target("avx512f,avx512bf16,avx512vl"))) void round_rows(const float* x, uint32_t* xb, int64_t rows, int64_t rows_pad, int64_t in, int64_t pairs) {
#pragma omp parallel for schedule(static) if (rows * in >= kParallelMinWork)
  for (int64_t r = 0; r < rows_pad; ++r) {
    uint32_t* base = xb + (r / kTile) * pairs * kTile + r % kTile;
    for (int64_t k = 0; k < 2 * pairs; k += 16) {
      const int64_t left = r < rows ? std::max<int64_t>(0, std::min<int64_t>(16, in - k)) : 0;
      const __m512 v = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << left) - 1), x + r * in + k);
      const __m256bh b = _mm512_cvtneps_pbh(v);
      uint32_t w[8];
      std::memcpy(w, &b, sizeof w);
      for (int i = 0; i < 8; ++i) base[(k / 2 + i) * kTile] = w[i];
    }
  }
}

// The weight rows a micro-step reads, when W cannot be read in place: the last partial panel (rows past
// `out` would be read past the array's end) or a width that is not a multiple of 32 (a step would run into
// the next row). Copied into 32 rows of `ldw` zero-padded inputs.
void pad_rows(const uint16_t* w, int64_t in, int64_t out, int64_t o0, int64_t ldw, uint16_t* dst) {
  for (int64_t j = 0; j < 2 * kTile; ++j) {
    uint16_t* d = dst + j * ldw;
    const int64_t valid = o0 + j < out ? in : 0;
    if (valid) std::memcpy(d, w + (o0 + j) * in, static_cast<size_t>(in) * sizeof(uint16_t));
    std::fill(d + valid, d + ldw, uint16_t{0});
  }
}

// yᵀ tile: outputs [o0, o0+n) × rows [r0, r0+m) over the padded width. wp: 32 weight rows, stride ldw
// elements; xb: the B layout above.
EP_AMX_TARGET void micro(const uint16_t* wp, int64_t ldw, const uint32_t* xb, int64_t pairs, float* y, int64_t out, int64_t r0, int64_t m, int64_t o0, int64_t n) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const uint32_t* x0 = xb + (r0 / kTile) * pairs * kTile;
  const uint32_t* x1 = x0 + pairs * kTile;
  const int64_t width = pairs * 2;
  for (int64_t k = 0; k < width; k += kStep) {
    _tile_loadd(4, wp + k, ldw * 2);
    _tile_loadd(5, wp + kTile * ldw + k, ldw * 2);
    _tile_loadd(6, x0 + (k / 2) * kTile, kTile * 4);
    _tile_loadd(7, x1 + (k / 2) * kTile, kTile * 4);
    _tile_dpbf16ps(0, 4, 6);  // outputs 0–15 × rows 0–15
    _tile_dpbf16ps(1, 4, 7);  // outputs 0–15 × rows 16–31
    _tile_dpbf16ps(2, 5, 6);  // outputs 16–31 × rows 0–15
    _tile_dpbf16ps(3, 5, 7);  // outputs 16–31 × rows 16–31
  }
  alignas(64) float c[2 * kTile][2 * kTile];  // [output][row]
  _tile_stored(0, &c[0][0], 2 * kTile * 4);
  _tile_stored(1, &c[0][kTile], 2 * kTile * 4);
  _tile_stored(2, &c[kTile][0], 2 * kTile * 4);
  _tile_stored(3, &c[kTile][kTile], 2 * kTile * 4);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) y[(r0 + r) * out + o0 + j] = c[j][r];
}

EP_AMX_TARGET void load_tiles(const TileConfig& c) { _tile_loadconfig(&c); }
EP_AMX_TARGET void release_tiles() { _tile_release(); }

bool cpu_has_amx_bf16() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx = (d & (1u << 22)) && (d & (1u << 24));  // AMX-BF16, AMX-TILE
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return amx && (a & (1u << 5));  // AVX512-BF16, for the rounding
}

// Linux hands the tile registers' state only to processes that ask (ARCH_REQ_XCOMP_PERM, Linux 5.16+).
bool tile_permission() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

bool detect() {
  const char* env = std::getenv("ENTROPRUNE_BF16_GEMM");
  if (env && std::string(env) == "0") return false;
  return cpu_has_amx_bf16() && tile_permission();
}

}  // namespace

bool gemm_bf16_available() {
  static const bool yes = detect();
  return yes;
}

void gemm_bf16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out) {
  if (!gemm_bf16_available()) throw Error(ErrorCode::kInvalidArgument, "", "gemm_bf16: no AMX-BF16 on this CPU or kernel (or ENTROPRUNE_BF16_GEMM=0)");
  if (rows <= 0 || out <= 0) return;
  const int64_t width = std::max<int64_t>(kStep, (in + kStep - 1) / kStep * kStep);
  const int64_t pairs = width / 2;
  const int64_t rows_pad = (rows + 2 * kTile - 1) / (2 * kTile) * (2 * kTile);
  const int64_t panels = (out + 2 * kTile - 1) / (2 * kTile);
  // The rounded activations, kept between calls (a prompt pass makes seven products per block).
  thread_local std::vector<uint32_t> xb;
  if (xb.size() < static_cast<size_t>(rows_pad * pairs)) xb.resize(static_cast<size_t>(rows_pad * pairs));
  uint32_t* xp = xb.data();
  round_rows(x, xp, rows, rows_pad, in, pairs);
  const bool in_place = in % kStep == 0;
  const int64_t row_block = std::clamp<int64_t>(kRowBlockBytes / (width * 2) / (2 * kTile) * (2 * kTile), 2 * kTile, kMaxRowBlock);
  const TileConfig cfg = tile_config();
#pragma omp parallel if (rows * out * in >= kParallelMinWork)
  {
    load_tiles(cfg);  // tile configuration is per thread
#ifdef _OPENMP
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
#else
    const int64_t nt = 1, t = 0;
#endif
    const int64_t b0 = panels * t / nt, b1 = panels * (t + 1) / nt;
    std::vector<uint16_t> padded(static_cast<size_t>(2 * kTile * width));
    for (int64_t rb = 0; rb < rows; rb += row_block)
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t o0 = b * 2 * kTile, n = std::min(2 * kTile, out - o0);
        const uint16_t* wp = w + o0 * in;
        int64_t ldw = in;
        if (!in_place || n < 2 * kTile) {
          pad_rows(w, in, out, o0, width, padded.data());
          wp = padded.data(), ldw = width;
        }
        for (int64_t r0 = rb; r0 < std::min(rows, rb + row_block); r0 += 2 * kTile)
          micro(wp, ldw, xp, pairs, y, out, r0, std::min(2 * kTile, rows - r0), o0, n);
      }
    release_tiles();
  }
}

#else  // no AMX kernel in this build

bool gemm_bf16_available() { return false; }

void gemm_bf16(const float*, const uint16_t*, float*, int64_t, int64_t, int64_t) {
  throw Error(ErrorCode::kInvalidArgument, "", "gemm_bf16: built without the AMX kernel (x86-64 Linux, GCC 11 or Clang 12 and later)");
}

#endif

}  // namespace ep
