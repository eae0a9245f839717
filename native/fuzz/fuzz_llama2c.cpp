// llama2.c checkpoints: the 7-field header and the size it implies.
#include "core/load/model.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = ep::fuzz::scratch_path(".bin");
  ep::fuzz::write_file(path, data, size);
  ep::fuzz::expect_clean([&] {
    auto m = ep::load_llama2c(path);
    (void)m->parameter_count();
  });
  return 0;
}
