// Weight magnitudes per unit (the paper's "weight" ablation ranks units by them): per query head
// ‖Wq rows of h‖² + ‖Wo columns of h‖², per MLP channel ‖gate_j‖² + ‖up_j‖² + ‖down[:, j]‖².
#pragma once
#include <vector>

#include "core/load/model.h"

namespace ep {

struct UnitWeightMagnitudes {
  std::vector<std::vector<double>> heads;     // [layer][query head]
  std::vector<std::vector<double>> channels;  // [layer][channel]
};

UnitWeightMagnitudes unit_weight_magnitudes(const Model& model);

}  // namespace ep
