// Matrix products of many activation rows with bfloat16 weights used as stored, on the CPU's AMX tile unit
// (Intel Sapphire Rapids and later: TDPBF16PS multiplies a 16×32 by a 32×16 bfloat16 tile into float32 in one
// instruction, far beyond what AVX-512 reaches). The activations are rounded to bfloat16 first, as llama.cpp
// does for BF16 weights. Only generation's prompt pass uses it (decode.cpp hands linear() the stored
// originals); analysis, perplexity and scoring keep float32 activations and BLAS.
// Hand-written because no library in reach does it: Debian's OpenBLAS is built without sbgemm and oneDNN is
// not packaged for this build. (Measured on the way: an AVX512-BF16 vdpbf16ps kernel reached only 0.55–0.59×
// OpenBLAS sgemm on the float32 copies here, so only the tile unit is worth the rounding.)
#pragma once
#include <cstdint>

namespace ep {

// This CPU has AMX-BF16, the kernel let this process use the tile registers, and ENTROPRUNE_BF16_GEMM is not
// "0" (the switch lets a benchmark compare both paths in one run). Decided once.
bool gemm_bf16_available();

// y[rows, out] = bf16(x)[rows, in] · Wᵀ, W bfloat16 row-major [out, in]; x rounded to nearest even, sums in
// float32. Throws where gemm_bf16_available() is false.
void gemm_bf16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out);

}  // namespace ep
