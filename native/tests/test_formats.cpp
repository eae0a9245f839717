// Loaders: the same model from llama2.c and GGUF is bit-identical; HF configs read right; bad files give
// clear errors that name the file and the problem.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "core/format/gguf_file.h"
#include "core/load/model.h"
#include "test_util.h"

using namespace ep;
using ep::test::data_dir;

static const char* kBin = "models/stories260K/stories260K.bin";
static const char* kGguf = "models/stories260K/stories260K.gguf";
static const char* kHf = "models/tinystories-656K";

TEST(Formats, Stories260KConfigFromBothFormats) {
  REQUIRE_DATA(kBin);
  REQUIRE_DATA(kGguf);
  auto a = load_model(data_dir() + "/" + kBin);
  auto b = load_model(data_dir() + "/" + kGguf);
  for (auto* m : {a.get(), b.get()}) {
    const ModelConfig& c = m->config;
    EXPECT_EQ(c.dim, 64);
    EXPECT_EQ(c.vocab, 512);
    EXPECT_EQ(c.n_layers(), 5);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.layers[3].n_head, 8);
    EXPECT_EQ(c.layers[3].n_kv_head, 4);
    EXPECT_EQ(c.layers[3].ffn, 172);
    EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
    EXPECT_EQ(c.rope_layout, RopeLayout::kInterleaved);
    EXPECT_EQ(m->converted_bytes, 0u) << "F32 weights must be used in place from the map";
  }
  EXPECT_TRUE(a->config.tied_output);
  // Every tensor the engine reads is bit-identical between the two files.
  const int64_t d = 64;
  EXPECT_EQ(0, std::memcmp(a->tok_embd, b->tok_embd, 512 * d * 4));
  EXPECT_EQ(0, std::memcmp(a->output, b->output, 512 * d * 4));
  for (int l = 0; l < 5; ++l) {
    EXPECT_EQ(0, std::memcmp(a->layers[l].wq, b->layers[l].wq, d * d * 4));
    EXPECT_EQ(0, std::memcmp(a->layers[l].wk, b->layers[l].wk, 32 * d * 4));
    EXPECT_EQ(0, std::memcmp(a->layers[l].w_down, b->layers[l].w_down, d * 172 * 4));
    EXPECT_EQ(0, std::memcmp(a->layers[l].ffn_norm, b->layers[l].ffn_norm, d * 4));
  }
  EXPECT_EQ(a->block_linear_parameter_count(), 5u * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64));
}

TEST(Formats, TinyStoriesHfConfig) {
  REQUIRE_DATA(std::string(kHf) + "/config.json");
  auto m = load_model(data_dir() + "/" + kHf);
  const ModelConfig& c = m->config;
  EXPECT_EQ(m->format, "hf");
  EXPECT_EQ(c.dim, 128);
  EXPECT_EQ(c.vocab, 2048);
  EXPECT_EQ(c.n_layers(), 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.layers[0].n_kv_head, 4);
  EXPECT_EQ(c.layers[1].ffn, 384);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  EXPECT_EQ(c.rope_layout, RopeLayout::kHalf);
  EXPECT_TRUE(c.tied_output);
  EXPECT_EQ(m->tok_embd, m->output);  // only lm_head.weight is stored
}

// ---- bad inputs: each must throw ep::Error whose message names the file and the problem.
static std::string error_of(const std::string& path) {
  try {
    load_model(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Formats, TruncatedLlama2c) {
  REQUIRE_DATA(kBin);
  test::TempDir t;
  auto bytes = test::read_all(data_dir() + "/" + kBin);
  bytes.resize(bytes.size() / 2);
  test::write_all(t.file("cut.bin"), bytes);
  std::string e = error_of(t.file("cut.bin"));
  EXPECT_NE(e.find(t.file("cut.bin")), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

// Found by fuzz_llama2c: a vocab_size of INT32_MIN (untied flag + magnitude) used to overflow on negation.
TEST(Formats, Llama2cExtremeVocabSize) {
  test::TempDir t;
  const int32_t h[7] = {64, 172, 5, 8, 4, INT32_MIN, 512};
  std::vector<char> bytes(reinterpret_cast<const char*>(h), reinterpret_cast<const char*>(h) + sizeof(h));
  bytes.resize(4096, 0);
  test::write_all(t.file("odd.bin"), bytes);
  std::string e = error_of(t.file("odd.bin"));
  EXPECT_NE(e.find("vocab_size -2147483648 is invalid"), std::string::npos) << e;
}

TEST(Formats, TruncatedGguf) {
  REQUIRE_DATA(kGguf);
  test::TempDir t;
  auto bytes = test::read_all(data_dir() + "/" + kGguf);
  bytes.resize(20000);  // header intact, tensor data cut
  test::write_all(t.file("cut.gguf"), bytes);
  std::string e = error_of(t.file("cut.gguf"));
  EXPECT_NE(e.find("cut.gguf"), std::string::npos) << e;
  EXPECT_NE(e.find("outside the file"), std::string::npos) << e;
}

TEST(Formats, GgufHeaderThatLiesAboutCounts) {
  REQUIRE_DATA(kGguf);
  test::TempDir t;
  auto bytes = test::read_all(data_dir() + "/" + kGguf);
  uint64_t lie = 1ull << 40;
  std::memcpy(bytes.data() + 8, &lie, 8);  // tensor count
  test::write_all(t.file("lie.gguf"), bytes);
  std::string e = error_of(t.file("lie.gguf"));
  EXPECT_NE(e.find("more than the file can hold"), std::string::npos) << e;
}

// Offset just past the first occurrence of a metadata key in a GGUF's bytes (its type tag starts there),
// or SIZE_MAX / 2 when absent so that the callers' bounds assertions fail.
size_t end_of_key(const std::vector<char>& bytes, const std::string& key) {
  auto at = std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
  return at == bytes.end() ? SIZE_MAX / 2 : static_cast<size_t>(at - bytes.begin()) + key.size();
}

// Found by fuzz_gguf: an eos_token_id of 0xFFFFFFFF (uint32) was cast from double to int unchecked.
TEST(Formats, GgufTokenIdOutOfRange) {
  REQUIRE_DATA(kGguf);
  test::TempDir t;
  auto bytes = test::read_all(data_dir() + "/" + kGguf);
  const std::string key = "tokenizer.ggml.eos_token_id";
  const size_t value = end_of_key(bytes, key) + 4;  // after the uint32 type tag
  ASSERT_LT(value, bytes.size());
  uint32_t type, huge = 0xFFFFFFFFu;
  std::memcpy(&type, bytes.data() + value - 4, 4);
  ASSERT_EQ(type, 4u);  // GGUF_TYPE_UINT32
  std::memcpy(bytes.data() + value, &huge, 4);
  test::write_all(t.file("eos.gguf"), bytes);
  std::string e = error_of(t.file("eos.gguf"));
  EXPECT_NE(e.find("eos.gguf"), std::string::npos) << e;
  EXPECT_NE(e.find("'tokenizer.ggml.eos_token_id' = 4294967295 is out of range"), std::string::npos) << e;
}

// An array length the rest of the file cannot hold is refused before any memory is reserved for it.
TEST(Formats, GgufArrayLongerThanTheFile) {
  REQUIRE_DATA(kGguf);
  test::TempDir t;
  auto bytes = test::read_all(data_dir() + "/" + kGguf);
  const std::string key = "tokenizer.ggml.tokens";
  const size_t count = end_of_key(bytes, key) + 4 + 4;  // after the ARRAY and STRING type tags
  ASSERT_LT(count, bytes.size());
  const uint64_t lie = bytes.size() / 4;  // at most size/8 strings fit: the old check (size) let this through
  std::memcpy(bytes.data() + count, &lie, 8);
  test::write_all(t.file("arr.gguf"), bytes);
  std::string e = error_of(t.file("arr.gguf"));
  EXPECT_NE(e.find("arr.gguf"), std::string::npos) << e;
  EXPECT_NE(e.find("metadata 'tokenizer.ggml.tokens': array length " + std::to_string(lie) + " is more than the rest of the file can hold"),
            std::string::npos)
      << e;
}

TEST(Formats, GgufQuantizedTensorNamed) {
  REQUIRE_DATA(kGguf);
  test::TempDir t;
  auto bytes = test::read_all(data_dir() + "/" + kGguf);
  // Patch the type of the first tensor (token_embd.weight) to Q8_0 (8), keeping the header well-formed.
  GgufFile g = read_gguf(data_dir() + "/" + kGguf);
  const std::string name = g.tensors[0].name;
  const char* hdr = bytes.data();
  size_t pos = 0;
  for (size_t i = 0; i + name.size() < 20000; ++i)
    if (std::memcmp(hdr + i, name.data(), name.size()) == 0) { pos = i + name.size(); break; }
  ASSERT_GT(pos, 0u);
  uint32_t nd;
  std::memcpy(&nd, hdr + pos, 4);
  const size_t type_at = pos + 4 + nd * 8;
  uint32_t q8 = 8;
  std::memcpy(bytes.data() + type_at, &q8, 4);
  test::write_all(t.file("q.gguf"), bytes);
  std::string e = error_of(t.file("q.gguf"));
  EXPECT_NE(e.find(name), std::string::npos) << e;
  EXPECT_NE(e.find("Q8_0"), std::string::npos) << e;
}

static void write_safetensors(const std::string& path, const std::string& header, size_t data_bytes) {
  std::vector<char> b(8 + header.size() + data_bytes, 0);
  uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  test::write_all(path, b);
}

static void write_text(const std::string& path, const std::string& s) {
  test::write_all(path, std::vector<char>(s.begin(), s.end()));
}

static const char* kTinyConfig =
    R"({"model_type":"llama","hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
        "num_key_value_heads":1,"vocab_size":4,"rms_norm_eps":1e-6,"tie_word_embeddings":true})";

TEST(Formats, SafetensorsLyingOffsets) {
  test::TempDir t;
  write_text(t.file("config.json"), kTinyConfig);
  write_safetensors(t.file("model.safetensors"),
                    R"({"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[0,4096]}})", 32);
  std::string e = error_of(t.path());
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("model.norm.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("outside the data section"), std::string::npos) << e;
}

TEST(Formats, SafetensorsUnknownDtype) {
  test::TempDir t;
  write_text(t.file("config.json"), kTinyConfig);
  write_safetensors(t.file("model.safetensors"),
                    R"({"model.norm.weight":{"dtype":"Q9","shape":[8],"data_offsets":[0,32]}})", 32);
  std::string e = error_of(t.path());
  EXPECT_NE(e.find("unknown dtype 'Q9'"), std::string::npos) << e;
}

TEST(Formats, SafetensorsOverlappingTensors) {
  test::TempDir t;
  write_text(t.file("config.json"), kTinyConfig);
  write_safetensors(t.file("model.safetensors"),
                    R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},"b":{"dtype":"F32","shape":[8],"data_offsets":[16,48]}})", 48);
  std::string e = error_of(t.path());
  EXPECT_NE(e.find("overlap"), std::string::npos) << e;
}

TEST(Formats, HfMissingTensorAndShapeMismatch) {
  test::TempDir t;
  write_text(t.file("config.json"), kTinyConfig);
  write_safetensors(t.file("model.safetensors"),
                    R"({"lm_head.weight":{"dtype":"F32","shape":[4,8],"data_offsets":[0,128]},"model.norm.weight":{"dtype":"F32","shape":[7],"data_offsets":[128,156]}})", 156);
  std::string e = error_of(t.path());
  EXPECT_NE(e.find("model.norm.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("shape [7]"), std::string::npos) << e;
  write_safetensors(t.file("model.safetensors"), R"({"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", 32);
  e = error_of(t.path());
  EXPECT_NE(e.find("missing tensor"), std::string::npos) << e;
}

TEST(Formats, HfBadConfig) {
  test::TempDir t;
  write_text(t.file("config.json"), "{ not json");
  std::string e = error_of(t.path());
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
  write_text(t.file("config.json"), R"({"model_type":"llama"})");
  e = error_of(t.path());
  EXPECT_NE(e.find("hidden_size"), std::string::npos) << e;
  // Found by fuzz_safetensors: a huge float where an int belongs used to be cast silently (undefined behaviour).
  write_text(t.file("config.json"), R"({"hidden_size":5e59,"vocab_size":3,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":4})");
  e = error_of(t.path());
  EXPECT_NE(e.find("field 'hidden_size' must be an integer"), std::string::npos) << e;
  write_text(t.file("config.json"), R"({"hidden_size":4,"vocab_size":3,"num_hidden_layers":1,"num_attention_heads":99999999999,"intermediate_size":4})");
  e = error_of(t.path());
  EXPECT_NE(e.find("field 'num_attention_heads' is out of range"), std::string::npos) << e;
  write_text(t.file("config.json"), R"({"hidden_size":4,"vocab_size":3,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":4,"rms_norm_eps":1e300})");
  e = error_of(t.path());
  EXPECT_NE(e.find("field 'rms_norm_eps' is out of range"), std::string::npos) << e;
}

TEST(Formats, HfMissingShard) {
  test::TempDir t;
  write_text(t.file("config.json"), kTinyConfig);
  write_text(t.file("model.safetensors.index.json"), R"({"weight_map":{"model.norm.weight":"model-00001-of-00002.safetensors"}})");
  std::string e = error_of(t.path());
  EXPECT_NE(e.find("model-00001-of-00002.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

TEST(Formats, NotAModel) {
  test::TempDir t;
  write_text(t.file("x.bin"), "hello");
  EXPECT_NE(error_of(t.file("x.bin")).find("x.bin"), std::string::npos);
  EXPECT_NE(error_of(t.file("nope.gguf")).find("cannot open"), std::string::npos);
}
