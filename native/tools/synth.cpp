// entroprune_synth: writes a random-weight model at a real LLaMA shape, for timing and memory runs on
// machines without Node (the GPU machine). The Node CLI has the same as `entroprune synth`.
//   entroprune_synth <preset> <out.gguf | out-dir> [--dtype f32|f16|bf16] [--layers N] [--seed S]
// Presets: llama2-7b, llama2-13b, llama2-70b, llama3-8b, llama3-70b, mistral-7b. A path ending in .gguf is
// written as GGUF, anything else as a Hugging Face directory. Written to a temporary name, then renamed.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "core/synthetic/synthetic_model.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: entroprune_synth <preset> <out.gguf|out-dir> [--dtype f32|f16|bf16] [--layers N] [--seed S]\n");
    return 2;
  }
  ep::SyntheticSpec spec;
  spec.dtype = ep::DType::BF16;
  int layers = 0;
  const std::string preset = argv[1], out = argv[2];
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dtype") spec.dtype = v == "f32" ? ep::DType::F32 : v == "f16" ? ep::DType::F16 : ep::DType::BF16;
    else if (k == "--layers") layers = std::atoi(v.c_str());
    else if (k == "--seed") spec.seed = std::strtoull(v.c_str(), nullptr, 10);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    if (fs::exists(out)) throw ep::Error(ep::ErrorCode::kInvalidArgument, out, "already exists");
    spec.config = ep::synthetic_preset(preset, layers);
    const bool gguf = out.size() > 5 && out.compare(out.size() - 5, 5, ".gguf") == 0;
    const std::string tmp = out + ".tmp-synth";
    fs::remove_all(tmp);
    if (gguf) {
      ep::write_synthetic_gguf(spec, tmp);
    } else {
      fs::create_directory(tmp);
      ep::write_synthetic_hf(spec, tmp);
    }
    fs::rename(tmp, out);
    std::printf("%s: %s, %d blocks, written to %s\n", preset.c_str(), gguf ? "GGUF" : "Hugging Face", spec.config.n_layers(), out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "entroprune_synth: %s\n", e.what());
    return 1;
  }
  return 0;
}
