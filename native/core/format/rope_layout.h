// The two row orders of RoPE'd q/k weights: interleaved pairs (2i, 2i+1) per head (GGUF, llama2.c) and
// "rotate_half" (i, i + hd/2) per head (Hugging Face). Writers convert lazily, wrapping a tensor's fill.
#pragma once
#include <cstdint>
#include <functional>

namespace ep {

// HF rotate_half rows → interleaved rows: new 2i ← old i, new 2i+1 ← old i + hd/2 (per head of hd rows).
std::function<void(float*)> to_interleaved(std::function<void(float*)> inner, int64_t rows, int64_t cols, int hd);

// Interleaved rows → HF rotate_half rows: new i ← old 2i, new i + hd/2 ← old 2i+1.
std::function<void(float*)> to_half(std::function<void(float*)> inner, int64_t rows, int64_t cols, int hd);

}  // namespace ep
