// GGUF: header, metadata, tensor directory, then the model built from it (config, shapes, embedded vocab).
#include "core/gguf_file.h"
#include "core/model.h"
#include "core/tokenizer_spm.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = ep::fuzz::scratch_path(".gguf");
  ep::fuzz::write_file(path, data, size);
  ep::fuzz::expect_clean([&] { (void)ep::read_gguf(path); });
  ep::fuzz::expect_clean([&] {
    auto m = ep::load_gguf(path);
    (void)m->parameter_count();
  });
  return 0;
}
