// SentencePiece-style BPE vocabularies with scores: llama2.c's tok*.bin and the llama vocab embedded in
// GGUF files. Both formats are tiny and specific to these projects, so no library reads them: written here.
// tokenizer.json (Hugging Face) is NOT handled here; the TypeScript side uses a maintained library for it.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace ep {

class SpmVocab {
 public:
  // tok*.bin: int32 max_token_length, then per token {f32 score, i32 len, len bytes}.
  static SpmVocab from_llama2c_file(const std::string& path);
  // Pieces as stored (GGUF writes "▁" for spaces), with scores and optional token types (6 = byte).
  static SpmVocab from_pieces(std::vector<std::string> pieces, std::vector<float> scores,
                              const std::vector<int>& types, int bos, int eos, const std::string& source);

  // Encode as llama2.c's run.c does: optional BOS, a dummy-prefix space when text is non-empty, code points
  // looked up with byte fallback, then repeatedly merge the adjacent pair whose concatenation is in the
  // vocab with the highest score (leftmost on ties). Implemented with a heap: O(n log n), same result.
  std::vector<int32_t> encode(const std::string& text, bool add_bos) const;
  std::string decode(const std::vector<int32_t>& ids) const;

  int size() const { return static_cast<int>(pieces_.size()); }
  int bos() const { return bos_; }
  int eos() const { return eos_; }
  const std::string& piece(int id) const { return pieces_.at(id); }
  float score(int id) const { return scores_.at(id); }

 private:
  void index(const std::string& source);
  std::vector<std::string> pieces_;  // spaces as ' ', byte tokens as "<0xXX>"
  std::vector<float> scores_;
  std::unordered_map<std::string, int> lookup_;
  int byte_id_[256];
  int bos_ = 1, eos_ = 2;
};

}  // namespace ep
