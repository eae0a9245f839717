// The GGUF metadata of a llama-family model, shared by every GGUF entroprune writes (pruned models and
// synthetic test/timing models), so both follow the same llama/deci rules from ../shared/docs/GGUF-NOTES.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/format/gguf_writer.h"
#include "core/model_config.h"

namespace ep {

// Writes general.architecture and the `<arch>.*` hyper-parameters. Blocks that all share one shape (with
// attention and an MLP) are `llama`; anything else is `deci` with per-layer head and MLP arrays.
// Returns the architecture written.
std::string write_llama_hparams(GgufWriter& w, const ModelConfig& c);

// Writes a SentencePiece vocabulary as tokenizer.ggml.* (model "llama"); pieces use "▁" for spaces.
void write_spm_vocab(GgufWriter& w, const std::vector<std::string>& tokens, const std::vector<float>& scores,
                     const std::vector<int32_t>& types, int bos, int eos);

}  // namespace ep
