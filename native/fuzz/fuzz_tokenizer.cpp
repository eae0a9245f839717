// llama2.c tok*.bin vocabularies, then encoding and decoding with them: the input's tail after the first
// 0xFF 0xFE pair (if any) is also encoded as text, so odd UTF-8 meets odd vocabularies.
#include <cstring>

#include "core/format/tokenizer_spm.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = ep::fuzz::scratch_path(".tok");
  size_t split = size;
  for (size_t i = 0; i + 1 < size; ++i)
    if (data[i] == 0xFF && data[i + 1] == 0xFE) { split = i; break; }
  ep::fuzz::write_file(path, data, split);
  ep::fuzz::expect_clean([&] {
    ep::SpmVocab v = ep::SpmVocab::from_llama2c_file(path);
    std::string text = "Once upon a time, caf\xc3\xa9 \xe6\x9d\xb1 \xf0\x9f\x98\x80 \xff\xfe";
    if (split + 2 <= size) text.append(reinterpret_cast<const char*>(data + split + 2), size - split - 2);
    std::vector<int32_t> ids = v.encode(text, true);
    (void)v.decode(ids);
  });
  return 0;
}
