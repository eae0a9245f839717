// Thread count shared by OpenBLAS (matrix products) and OpenMP (attention, element-wise work).
#pragma once

namespace ep {
void set_num_threads(int n);  // n <= 0: all cores
int num_threads();
}  // namespace ep
