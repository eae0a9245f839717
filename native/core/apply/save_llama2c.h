// Writes a pruned model as a llama2.c checkpoint (legacy "version 0" export, the format load_llama2c reads and
// run.c runs). The format has one MLP width for every block, q as a dim × dim matrix (so every query head
// stays: head_size = dim / n_heads), one KV-head count and no biases — so it holds plans that only narrow
// the MLPs uniformly and/or drop whole blocks, without bias compensation. Anything else is refused with the
// reason and the planner options that produce a plan it can hold.
#pragma once
#include <string>

#include "core/apply/apply.h"

namespace ep {

// Writes `path` directly: the caller writes to a temporary name and renames.
void save_llama2c(const PrunedModel& pruned, const std::string& path);

}  // namespace ep
