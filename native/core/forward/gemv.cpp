#include "core/forward/gemv.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/forward/threads.h"

namespace ep {

namespace {

// Everything below is forced inline into the kernels, so each is compiled for its kernel's target.
#define EP_INLINE inline __attribute__((always_inline))

// The vector helpers return 32-byte vectors; they are always inlined, so the ABI note GCC gives for such
// returns in the portable clone (no AVX) concerns no real call.
#pragma GCC diagnostic ignored "-Wpsabi"

// 8 float lanes as a GCC vector: each kernel clone compiles it to its own registers (two SSE registers in
// the portable clone, a YMM register on Haswell and later).
typedef float v8f __attribute__((vector_size(32)));
typedef uint16_t v8u16 __attribute__((vector_size(16)));
typedef uint32_t v8u32 __attribute__((vector_size(32)));

EP_INLINE v8f load_v8f(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);  // unaligned
  return v;
}

// N weight rows against R activation rows (both known at compile time so the R·N accumulators stay in
// registers): 8 partial sums per pair, the weights converted from their storage type 8 lanes at a time by
// row.load8, the last in % 8 one at a time by row.load1. Several weight rows at once keep several memory
// streams in flight, which a single row's sequential reads do not (measured: 8 → 12 GB/s on one core).
template <int R, int N, typename Row>
EP_INLINE void dot_rows(const float* x, int64_t in, const Row* row, float* out /* [R][N] */) {
  v8f s[R][N] = {};
  int64_t i = 0;
  for (; i + 8 <= in; i += 8) {
    v8f xv[R];
    for (int r = 0; r < R; ++r) xv[r] = load_v8f(x + r * in + i);
    for (int n = 0; n < N; ++n) {
      const v8f w = row[n].load8(i);
      for (int r = 0; r < R; ++r) s[r][n] += w * xv[r];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < N; ++n) {
      const v8f t = s[r][n];
      out[r * N + n] = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    }
  for (; i < in; ++i)
    for (int n = 0; n < N; ++n) {
      const float w = row[n].load1(i);
      for (int r = 0; r < R; ++r) out[r * N + n] += w * x[r * in + i];
    }
}

// Weight rows by storage type: load8 converts 8 weights from i, load1 one.
struct F32Row {
  const float* w;
  EP_INLINE v8f load8(int64_t i) const { return load_v8f(w + i); }
  EP_INLINE float load1(int64_t i) const { return w[i]; }
};
struct Bf16Row {
  const uint16_t* w;
  EP_INLINE v8f load8(int64_t i) const {
    v8u16 h;
    std::memcpy(&h, w + i, sizeof h);
    const v8u32 bits = __builtin_convertvector(h, v8u32) << 16;  // bfloat16 is float32's high half
    v8f f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  EP_INLINE float load1(int64_t i) const { return bf16_to_f32(w[i]); }
};

// Output rows [o0, o1) for R activation rows, N weight rows at a time (N·R ≤ 8 accumulators).
template <int R, typename Row, typename Elem>
EP_INLINE void output_rows_of(const float* x, const Elem* w, float* y, int64_t in, int64_t out, int64_t o0, int64_t o1) {
  constexpr int N = R == 1 ? 8 : R == 2 ? 4 : R <= 4 ? 2 : 1;
  float acc[R * N];
  int64_t o = o0;
  for (; o + N <= o1; o += N) {
    Row rows[N];
    for (int n = 0; n < N; ++n) rows[n] = Row{w + (o + n) * in};
    dot_rows<R, N>(x, in, rows, acc);
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < N; ++n) y[r * out + o + n] = acc[r * N + n];
  }
  for (; o < o1; ++o) {
    const Row one{w + o * in};
    dot_rows<R, 1>(x, in, &one, acc);
    for (int r = 0; r < R; ++r) y[r * out + o] = acc[r];
  }
}

// Output rows [o0, o1): y[r, o] for every activation row r. Each kernel below is compiled for its target
// as a whole (the OpenMP region only calls it: an outlined parallel body would not inherit target_clones).
template <typename Row, typename Elem>
EP_INLINE void output_rows(const float* x, const Elem* w, float* y, int64_t rows, int64_t in, int64_t out, int64_t o0, int64_t o1) {
  switch (rows) {
    case 1: return output_rows_of<1, Row>(x, w, y, in, out, o0, o1);
    case 2: return output_rows_of<2, Row>(x, w, y, in, out, o0, o1);
    case 3: return output_rows_of<3, Row>(x, w, y, in, out, o0, o1);
    case 4: return output_rows_of<4, Row>(x, w, y, in, out, o0, o1);
    case 5: return output_rows_of<5, Row>(x, w, y, in, out, o0, o1);
    case 6: return output_rows_of<6, Row>(x, w, y, in, out, o0, o1);
    case 7: return output_rows_of<7, Row>(x, w, y, in, out, o0, o1);
    default: return output_rows_of<8, Row>(x, w, y, in, out, o0, o1);
  }
}

#define EP_GEMV_TARGETS __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
EP_GEMV_TARGETS void rows_f32(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out, int64_t o0, int64_t o1) {
  output_rows<F32Row>(x, w, y, rows, in, out, o0, o1);
}
EP_GEMV_TARGETS void rows_bf16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out, int64_t o0, int64_t o1) {
  output_rows<Bf16Row>(x, w, y, rows, in, out, o0, o1);
}

// Blocks of 16 output rows per task, split statically: each thread streams its own part of W.
template <typename Kernel>
void parallel_rows(int64_t out, int64_t in, Kernel kernel) {
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (out + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (out * in >= kParallelMinWork)
  for (int64_t b = 0; b < blocks; ++b) kernel(b * kBlock, std::min(out, (b + 1) * kBlock));
}

}  // namespace

void gemv_rows(const float* x, const void* w, DType dtype, float* y, int64_t rows, int64_t in, int64_t out) {
  if (rows < 1 || rows > kGemvMaxRows) throw Error(ErrorCode::kInvalidArgument, "", "gemv_rows: " + std::to_string(rows) + " rows");
  switch (dtype) {
    case DType::F32:
      // (not OpenBLAS' sgemv for one row: faster alone, 22.6 against 19.7 GB/s, but inside decoding its
      // pthreads and the forward pass's OpenMP threads take turns on the cores — decode fell from 10 to 7
      // tokens/s on the 7B-shaped model, and from 756 to 56 on stories260K)
      return parallel_rows(out, in, [&](int64_t o0, int64_t o1) { rows_f32(x, static_cast<const float*>(w), y, rows, in, out, o0, o1); });
    case DType::BF16:
      return parallel_rows(out, in, [&](int64_t o0, int64_t o1) { rows_bf16(x, static_cast<const uint16_t*>(w), y, rows, in, out, o0, o1); });
    case DType::F16:
      break;
  }
  throw Error(ErrorCode::kInvalidArgument, "", std::string("gemv_rows: no kernel for ") + dtype_name(dtype) + " weights");
}

}  // namespace ep
