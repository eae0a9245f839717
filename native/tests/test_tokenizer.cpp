// The SentencePiece-BPE encoder against a straightforward transcription of llama2.c's O(n²) algorithm,
// on real text; the GGUF-embedded vocab against tok512.bin; decoding of the documented greedy story.
#include <fstream>
#include <sstream>

#include "core/load/model.h"
#include "core/format/tokenizer_spm.h"
#include "test_util.h"

using namespace ep;
using ep::test::data_dir;

// Reference: run.c's loop — find the best-scoring adjacent pair (first on ties), merge, repeat.
static std::vector<int32_t> naive_encode(const SpmVocab& v, const std::string& text) {
  std::map<std::string, int> lookup;
  for (int i = v.size() - 1; i >= 0; --i) lookup[v.piece(i)] = i;
  auto find = [&](const std::string& s) { auto it = lookup.find(s); return it == lookup.end() ? -1 : it->second; };
  std::vector<int32_t> t{v.bos()};
  std::vector<int32_t> toks;
  if (text.empty()) return t;
  std::string s = " " + text;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t n = (c & 0x80) == 0 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    int id = find(s.substr(i, n));
    if (id >= 0) toks.push_back(id);
    else for (size_t k = 0; k < n; ++k) toks.push_back(static_cast<unsigned char>(s[i + k]) + 3);
    i += n;
  }
  while (true) {
    float best = -1e10f;
    int best_id = -1, best_i = -1;
    for (size_t i = 0; i + 1 < toks.size(); ++i) {
      int id = find(v.piece(toks[i]) + v.piece(toks[i + 1]));
      if (id >= 0 && v.score(id) > best) { best = v.score(id); best_id = id; best_i = static_cast<int>(i); }
    }
    if (best_i < 0) break;
    toks[best_i] = best_id;
    toks.erase(toks.begin() + best_i + 1);
  }
  t.insert(t.end(), toks.begin(), toks.end());
  return t;
}

static std::string read_text(const std::string& path, size_t max_bytes) {
  std::ifstream f(path, std::ios::binary);
  std::string s(max_bytes, '\0');
  f.read(&s[0], static_cast<std::streamsize>(max_bytes));
  s.resize(static_cast<size_t>(f.gcount()));
  return s;
}

TEST(Tokenizer, HeapEncoderMatchesRunC) {
  REQUIRE_DATA("models/stories260K/tok512.bin");
  SpmVocab v = SpmVocab::from_llama2c_file(data_dir() + "/models/stories260K/tok512.bin");
  EXPECT_EQ(v.size(), 512);
  for (const char* file : {"text/tinystories/tinystories_validation_head.txt", "text/wikitext-2-raw/wiki.test.raw"}) {
    REQUIRE_DATA(file);
    const std::string text = read_text(data_dir() + "/" + file, 6000);
    // Several cuts, including ones that end inside a UTF-8 sequence (WikiText has non-ASCII).
    for (size_t n : {0ul, 1ul, 7ul, 100ul, 999ul, 6000ul}) {
      const std::string part = text.substr(0, std::min(n, text.size()));
      EXPECT_EQ(v.encode(part, true), naive_encode(v, part)) << file << " first " << n << " bytes";
    }
  }
  EXPECT_EQ(v.encode("héllo ☃ wörld", true), naive_encode(v, "héllo ☃ wörld"));
}

TEST(Tokenizer, DecodesTheDocumentedGreedyStory) {
  REQUIRE_DATA("models/stories260K/tok512.bin");
  SpmVocab v = SpmVocab::from_llama2c_file(data_dir() + "/models/stories260K/tok512.bin");
  std::vector<int32_t> ids{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396};
  EXPECT_EQ(v.decode(ids).rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << v.decode(ids);
  // Encoding the decoded text gives back a token stream that decodes to the same text.
  const std::string text = v.decode(ids);
  EXPECT_EQ(v.decode(v.encode(text, true)), text);
}

TEST(Tokenizer, GgufVocabEqualsTok512) {
  REQUIRE_DATA("models/stories260K/stories260K.gguf");
  SpmVocab a = SpmVocab::from_llama2c_file(data_dir() + "/models/stories260K/tok512.bin");
  auto m = load_model(data_dir() + "/models/stories260K/stories260K.gguf");
  ASSERT_TRUE(m->embedded_vocab);
  const SpmVocab& b = *m->embedded_vocab;
  ASSERT_EQ(a.size(), b.size());
  const std::string text = read_text(data_dir() + "/text/tinystories/tinystories_validation_head.txt", 20000);
  EXPECT_EQ(a.encode(text, true), b.encode(text, true));
}

TEST(Tokenizer, RejectsGarbage) {
  test::TempDir t;
  test::write_all(t.file("tok.bin"), std::vector<char>{7, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0});
  try {
    SpmVocab::from_llama2c_file(t.file("tok.bin"));
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("tok.bin"), std::string::npos) << e.what();
  }
}
