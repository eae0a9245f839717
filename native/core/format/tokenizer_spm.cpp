#include "core/format/tokenizer_spm.h"

#include <cstring>
#include <queue>

#include "core/error.h"
#include "core/format/mapped_file.h"

namespace ep {

// Text of a symbol that must never merge: no vocabulary piece contains a NUL byte.
static const std::string kNoMerge("\0unk", 4);

static int parse_byte_piece(const std::string& p) {  // "<0xAB>" -> 0xAB, else -1
  if (p.size() != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  int hi = hex(p[3]), lo = hex(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

void SpmVocab::index(const std::string& source) {
  if (pieces_.empty()) fail_format(source, "the vocabulary is empty");
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  lookup_.reserve(pieces_.size() * 2);
  for (size_t i = 0; i < pieces_.size(); ++i) {
    int b = parse_byte_piece(pieces_[i]);
    if (b >= 0) byte_id_[b] = static_cast<int>(i);
    lookup_.emplace(pieces_[i], static_cast<int>(i));  // first occurrence wins, as in run.c's sorted search
  }
  if (bos_ < 0 || bos_ >= size() || eos_ < 0 || eos_ >= size())
    fail_format(source, "BOS/EOS ids lie outside the vocabulary of " + std::to_string(size()));
}

SpmVocab SpmVocab::from_llama2c_file(const std::string& path) {
  MappedFile f(path);
  SpmVocab v;
  uint64_t pos = 0;
  int32_t max_len;
  std::memcpy(&max_len, f.range(0, 4, "max_token_length"), 4);
  pos = 4;
  if (max_len <= 0 || max_len > 4096) fail_format(path, "not a llama2.c tokenizer: max_token_length " + std::to_string(max_len) + " is implausible");
  // Bounds-checked reads whose error text is built only on failure: a vocabulary has tens of thousands of
  // tokens, and formatting three messages per token up front dominated the load.
  auto at = [&](uint64_t off, uint64_t n, const char* field) -> const uint8_t* {
    if (off > f.size() || n > f.size() - off) return f.range(off, n, "token " + std::to_string(v.pieces_.size()) + " " + field);
    return f.data() + off;
  };
  while (pos < f.size()) {
    float score;
    int32_t len;
    std::memcpy(&score, at(pos, 4, "score"), 4);
    std::memcpy(&len, at(pos + 4, 4, "length"), 4);
    if (len < 0 || len > max_len)
      fail_format(path, "token " + std::to_string(v.pieces_.size()) + " has length " + std::to_string(len) +
                            " outside 0.." + std::to_string(max_len) + ": not a llama2.c tokenizer or truncated");
    const uint8_t* p = at(pos + 8, static_cast<uint64_t>(len), "bytes");
    v.pieces_.emplace_back(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    v.scores_.push_back(score);
    pos += 8 + static_cast<uint64_t>(len);
  }
  v.bos_ = 1;
  v.eos_ = 2;
  v.index(path);
  return v;
}

SpmVocab SpmVocab::from_pieces(std::vector<std::string> pieces, std::vector<float> scores, const std::vector<int>& types,
                               int bos, int eos, const std::string& source) {
  if (scores.size() != pieces.size()) fail_format(source, "tokenizer scores and tokens differ in count");
  if (!types.empty() && types.size() != pieces.size()) fail_format(source, "tokenizer token types and tokens differ in count");
  static const std::string kSpace = "\xe2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space
  SpmVocab v;
  for (std::string& p : pieces) {
    std::string out;
    for (size_t i = 0; i < p.size();) {
      if (p.compare(i, 3, kSpace) == 0) { out += ' '; i += 3; } else { out += p[i++]; }
    }
    p = std::move(out);
  }
  v.pieces_ = std::move(pieces);
  v.scores_ = std::move(scores);
  v.bos_ = bos;
  v.eos_ = eos;
  v.index(source);
  return v;
}

namespace {
struct Symbol {
  int id;
  size_t start;  // byte offset in the original text: keeps the left-to-right order for ties
  int prev, next;
  int version;
  std::string text;
};
struct Candidate {
  float score;
  size_t start;
  int left, right;
  int left_version, right_version;
  int merged_id;
  bool operator<(const Candidate& o) const {  // max-heap: highest score, then leftmost
    return score < o.score || (score == o.score && start > o.start);
  }
};
}  // namespace

std::vector<int32_t> SpmVocab::encode(const std::string& raw, bool add_bos) const {
  std::vector<int32_t> out;
  if (add_bos) out.push_back(bos_);
  if (raw.empty()) return out;
  const std::string text = " " + raw;  // dummy prefix, as SentencePiece with add_dummy_prefix
  std::vector<Symbol> sym;
  sym.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t n = (c & 0x80) == 0 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    if (i + n > text.size()) n = 1;
    std::string cp = text.substr(i, n);
    auto it = lookup_.find(cp);
    if (it != lookup_.end()) {
      sym.push_back({it->second, i, 0, 0, 0, cp});
    } else if (byte_id_[static_cast<unsigned char>(text[i])] >= 0) {
      for (size_t k = 0; k < n; ++k) {
        int id = byte_id_[static_cast<unsigned char>(text[i + k])];
        sym.push_back({id < 0 ? 0 : id, i + k, 0, 0, 0, id < 0 ? kNoMerge : pieces_[id]});
      }
    } else if (sym.empty() || sym.back().id != 0 || sym.back().text != kNoMerge) {
      // No byte tokens: the code point becomes <unk> (id 0), and a run of unknown code points one <unk>,
      // as SentencePiece and tokenizer.json's fuse_unk do. Its text never merges with a neighbour.
      sym.push_back({0, i, 0, 0, 0, kNoMerge});
    }
    i += n;
  }
  const int n = static_cast<int>(sym.size());
  for (int i = 0; i < n; ++i) { sym[i].prev = i - 1; sym[i].next = i + 1 < n ? i + 1 : -1; }
  std::priority_queue<Candidate> heap;
  auto consider = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    auto it = lookup_.find(sym[l].text + sym[r].text);
    if (it == lookup_.end()) return;
    heap.push({scores_[it->second], sym[l].start, l, r, sym[l].version, sym[r].version, it->second});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    Symbol& L = sym[c.left];
    Symbol& R = sym[c.right];
    // Stale if either side changed (merged or removed) since the candidate was pushed.
    if (L.version != c.left_version || R.version != c.right_version || L.next != c.right || L.id < 0 || R.id < 0) continue;
    L.text += R.text;
    L.id = c.merged_id;
    L.version++;
    R.id = -1;
    R.version++;
    L.next = R.next;
    if (R.next >= 0) sym[R.next].prev = c.left;
    consider(L.prev, c.left);
    consider(c.left, L.next);
  }
  for (int i = 0; i >= 0 && i < n; i = sym[i].next) out.push_back(sym[i].id);
  return out;
}

std::string SpmVocab::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  int prev = -1;
  for (int32_t id : ids) {
    if (id < 0 || id >= size()) continue;
    const std::string& p = pieces_[id];
    int b = parse_byte_piece(p);
    if (b >= 0) {
      out += static_cast<char>(b);
    } else if (prev == bos_ && !p.empty() && p[0] == ' ') {
      out += p.substr(1);
    } else if (id != bos_ && id != eos_) {
      out += p;
    }
    prev = id;
  }
  return out;
}

}  // namespace ep
