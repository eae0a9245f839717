// safetensors header (JSON, offsets, dtypes, overlap) and a Hugging Face directory whose config.json is the
// first part of the input: the input is split at the first NUL byte into config.json and model.safetensors.
#include <sys/stat.h>

#include <cstring>

#include "core/load/model.h"
#include "core/format/safetensors_file.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    std::string d = ep::fuzz::scratch_path("-hf");
    ::mkdir(d.c_str(), 0700);
    return d;
  }();
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t cfg = nul ? static_cast<size_t>(nul - data) : 0;
  const uint8_t* st = nul ? nul + 1 : data;
  const size_t st_size = nul ? size - cfg - 1 : size;
  ep::fuzz::write_file(dir + "/model.safetensors", st, st_size);
  ep::fuzz::expect_clean([&] { (void)ep::read_safetensors(dir + "/model.safetensors"); });
  if (nul) {
    ep::fuzz::write_file(dir + "/config.json", data, cfg);
    ep::fuzz::expect_clean([&] {
      auto m = ep::load_hf(dir);
      (void)m->parameter_count();
    });
  }
  return 0;
}
