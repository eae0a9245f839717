// Apply stage: turn a model and a pruning plan into the pruned model's configuration and tensors.
// Slicing (docs/METHOD.md section 0 units): query heads = rows of q and columns of o; KV groups = rows of k and
// v (with their query heads); MLP channels = rows of gate/up and columns of down; whole attention/MLP
// layers and blocks dropped, blocks renumbered. Bias compensation (section 6) folds the removed units'
// calibration means into biases the runtimes already have.
//
// Tensors are produced lazily: each PrunedTensor fills its buffer from the memory-mapped source when the
// writer asks for it, so peak memory stays near one tensor, not the whole model.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/apply/least_squares.h"
#include "core/load/model.h"

namespace ep {

struct PlanBlock {
  bool removed = false;
  bool attn_removed = false;
  bool mlp_removed = false;
  std::vector<int> kept_kv, kept_heads, kept_channels;
  bool compensate = true;
};

// Calibration means of one block (empty vectors when unavailable; compensation then needs none of them).
struct BlockMeans {
  std::vector<double> head_mean;      // [n_head·head_dim] input of o_proj
  std::vector<double> channel_mean;   // [ffn] input of down_proj
  std::vector<double> attn_out_mean;  // [dim] E[a_l]
  std::vector<double> mlp_out_mean;   // [dim] E[m_l]
};

struct PrunedTensor {
  std::string name;             // canonical (GGUF-style) name in the pruned numbering
  std::vector<int64_t> shape;   // row-major, outermost first
  std::function<void(float*)> fill;
};

struct PrunedModel {
  ModelConfig config;           // pruned per-layer shapes, bias flags, untied output when embeddings changed
  std::vector<PrunedTensor> tensors;
  std::vector<int> source_block;  // pruned block i came from source block source_block[i]
  double embedding_shift_norm = 0;  // ‖c‖ folded into the token embeddings (block 0 compensation)
  std::vector<double> embedding_shift;  // c itself ([dim], empty when nothing was folded there): tok_embd's rows gain it
};

struct ApplyOptions {
  // Keep every shape and zero the removed units instead of slicing them out (with the same biases):
  // the reference the equivalence tests compare the sliced model against.
  bool zero_instead_of_slice = false;
  // Least-squares compensation (apply/refit.h): where a block has a refit, its kept o_proj / down_proj columns
  // are the refitted ones and the output bias gains the refit's shift in place of the removed units' mean
  // output. One entry per source block; nullptr = the paper's bias compensation everywhere. Read when the
  // tensors are filled, so it must outlive the PrunedModel's fills (as the model must).
  const std::vector<LayerRefit>* refits = nullptr;
};

// Throws ep::Error (kInvalidArgument) naming the block and field when the plan does not fit the model (or lacks
// the means its compensation needs).
void check_plan(const Model& model, const std::vector<PlanBlock>& plan, const std::vector<BlockMeans>& means);

// What compensating a partial cut of block l's attention (attn) or MLP adds to that layer's output bias, added
// into `bias` ([dim]): the least-squares refit's shift where `refit` has one for that layer, else the removed
// units' mean contribution W[:, removed]·μ (w: the block's source weights, mm: its calibration means). Shared by
// prune_model and the plan loss (apply/plan_loss.h), which takes it out again to restore a layer.
void add_partial_cut_compensation(const ModelConfig& c, int l, const LayerWeights& w, const PlanBlock& b, const BlockMeans& mm, const LayerRefit* refit, bool attn,
                                  std::vector<double>& bias);

// Throws ep::Error (kInvalidArgument) naming the block and field when the plan does not fit the model.
PrunedModel prune_model(const Model& model, const std::vector<PlanBlock>& plan, const std::vector<BlockMeans>& means,
                        const ApplyOptions& options = {});

}  // namespace ep
