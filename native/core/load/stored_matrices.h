// A block's matrices as the file stores them, when that is bfloat16: decoding multiplies one
// row at a time and reads each weight once, so reading the 2-byte originals (forward/gemv.h) halves its
// memory traffic against the float32 copies the model binds (model.h). Null entries: use the float32 views.
#pragma once
#include <cstdint>

#include "core/load/model.h"

namespace ep {

struct StoredMatrices {
  const uint16_t *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr, *w_gate = nullptr, *w_up = nullptr, *w_down = nullptr;
};

// Block l's matrices stored as bfloat16 (others null), and the output head's; all null for F32 and F16 files.
StoredMatrices stored_matrices(const Model& model, int l);
const uint16_t* stored_output(const Model& model);

}  // namespace ep
