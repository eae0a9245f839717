// Thread count shared by OpenBLAS (matrix products) and OpenMP (attention, element-wise work).
#pragma once
#include <cstdint>

namespace ep {

// Below this many elements of work a loop runs on the calling thread: an OpenMP region's fork and join
// cost more than the work (decoding a small model runs hundreds of such loops per token; with them all
// parallel, stories260K decoded at a third of llama.cpp's speed).
constexpr int64_t kParallelMinWork = int64_t{1} << 15;
void set_num_threads(int n);  // n <= 0: all cores
int num_threads();
}  // namespace ep
