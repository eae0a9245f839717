// The refit-aware damage of partial cuts [ours] (docs/METHOD.md §4a): how much of a sublayer's output its
// least-squares compensation (apply/least_squares.h) cannot restore as its units are removed one by one in a
// given order. With x the layer's input (o_proj: the heads' outputs; down_proj: the MLP channels), Σ its
// calibration covariance and W the layer's weight, removing the set R and refitting the kept set K leaves
//
//   E(R) = tr(W Σ_{·|K} Wᵀ)  = tr(W Σ Wᵀ) − ‖W Σ_{:,K} L_K⁻ᵀ‖²,   Σ_KK = L_K L_Kᵀ,
//
// the output variance the kept units do not explain linearly. Removing the units in the order u₁, u₂, …, the
// step of u_k is E({u₁..u_k}) − E({u₁..u_{k−1}}): the variance u_k explains beyond every unit removed after it.
// With the input permuted into the reverse order (the last-removed unit first), Σ_π = L Lᵀ (Cholesky), that
// step is the sum over u_k's columns i of ‖(W_π L)_{:,i}‖² — one Cholesky and one triangular product per order,
// the steps summing to tr(W Σ Wᵀ) (what removing the whole layer with its mean folded in leaves). With
// uncorrelated units it is each unit's own contribution Var(x_j)·‖W_{:,j}‖² (the bias compensation's view); a
// unit whose output the kept units reproduce costs nothing.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "core/device/batches.h"
#include "core/device/layer_input_passes.h"
#include "core/load/model.h"

namespace ep {

// w: [rows × cols] row-major (y = w·x); cov: [cols × cols] row-major, the population covariance of x;
// units: each unit's columns, units in removal order (together every column at most once). Returns the step of
// each unit, in the order given. A ridge of 1e-9 of the mean variance (raised ×100 while the factorisation
// fails) keeps constant or collinear units factorable: their steps come out ≈ 0.
std::vector<double> refit_removal_steps(const float* w, int64_t rows, int64_t cols, const std::vector<double>& cov,
                                        const std::vector<std::vector<int64_t>>& units);

// Per block, the units of each sublayer in removal order: attention units are KV groups (each with its query
// heads' head_dim columns each), MLP units channels. An empty order skips that sublayer.
struct RemovalOrders {
  std::vector<std::vector<int>> attn_groups;  // [layer] → KV group indices
  std::vector<std::vector<int>> mlp_channels;  // [layer] → channel indices
};

// Per block, each unit's step by unit index (empty where the order was empty).
struct RefitDamage {
  std::vector<std::vector<double>> attn, mlp;
};

// Captures the sublayers' input covariances on `calibration` once (device/layer_input_passes.h: passes of at
// most `memory_budget` accumulator bytes) and returns the steps of each set of orders (one per unit ranking).
// runner: the capture's blocks on a block runner (layer_input_runner: a GPU's); empty: the CPU.
std::vector<RefitDamage> measure_refit_damage(const Model& model, const std::vector<RemovalOrders>& orders, const TokenBatches& calibration,
                                              uint64_t memory_budget, const std::atomic<bool>* cancel, const StageProgress& progress,
                                              int* passes = nullptr, const LayerInputRunnerFactory& runner = {});

}  // namespace ep
