#include "core/format/gguf_file.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/error.h"

namespace ep {

const char* ggml_type_name(uint32_t t) {
  static const char* names[] = {"F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0",    "Q5_1",   "Q8_0",
                                "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",    "IQ2_XXS", "IQ2_XS",
                                "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32",
                                "I64",  "F64",  "IQ1_M", "BF16"};
  return t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

namespace {

// Sequential reader over the mapped bytes; every read is bounds-checked.
class Cursor {
 public:
  Cursor(const MappedFile& f) : f_(f) {}
  template <typename T>
  T read(const char* what) {
    T v;
    std::memcpy(&v, f_.range(pos_, sizeof(T), what), sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t n = read<uint64_t>(what);
    if (n > (1u << 30)) fail_format(f_.path(), std::string(what) + ": string length " + std::to_string(n) + " is implausible");
    const uint8_t* p = f_.range(pos_, n, what);
    pos_ += n;
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  uint64_t pos() const { return pos_; }

 private:
  const MappedFile& f_;
  uint64_t pos_ = 0;
};

// Bytes of one scalar of type t (0 for strings, arrays and unknown types).
uint64_t value_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

double read_number(Cursor& c, GgufType t, const char* what, bool* is_int, const std::string& file) {
  *is_int = true;
  switch (t) {
    case GgufType::U8: return c.read<uint8_t>(what);
    case GgufType::I8: return c.read<int8_t>(what);
    case GgufType::U16: return c.read<uint16_t>(what);
    case GgufType::I16: return c.read<int16_t>(what);
    case GgufType::U32: return c.read<uint32_t>(what);
    case GgufType::I32: return c.read<int32_t>(what);
    case GgufType::U64: return static_cast<double>(c.read<uint64_t>(what));
    case GgufType::I64: return static_cast<double>(c.read<int64_t>(what));
    case GgufType::BOOL: return c.read<uint8_t>(what) ? 1 : 0;
    case GgufType::F32: *is_int = false; return c.read<float>(what);
    case GgufType::F64: *is_int = false; return c.read<double>(what);
    default: fail_format(file, std::string(what) + ": unknown metadata value type " + std::to_string(static_cast<uint32_t>(t)));
  }
}

}  // namespace

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv.find(key);
  return it == kv.end() ? nullptr : &it->second;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail_format(file->path(), "missing metadata key '" + key + "'");
  if (v->type == GgufType::ARRAY || v->type == GgufType::STRING || !v->is_integer)
    fail_format(file->path(), "metadata key '" + key + "' is not an integer");
  // doubles at or beyond 2^63 (a uint64 near its maximum) do not convert to int64_t
  if (!(v->number >= -9.2e18 && v->number <= 9.2e18)) fail_format(file->path(), "metadata key '" + key + "' is out of range");
  return static_cast<int64_t>(v->number);
}

int GgufFile::get_i32(const std::string& key) const {
  const int64_t v = get_int(key);
  if (v < INT32_MIN || v > INT32_MAX) fail_format(file->path(), "metadata key '" + key + "' = " + std::to_string(v) + " is out of range");
  return static_cast<int>(v);
}

int GgufFile::int_in_range(const std::string& key, double x, int64_t lo, int64_t hi) const {
  if (!(x >= static_cast<double>(lo) && x <= static_cast<double>(hi)) || x != static_cast<double>(static_cast<int64_t>(x)))
    fail_format(file->path(), "metadata '" + key + "' holds " + std::to_string(x) + ", expected an integer in [" + std::to_string(lo) + ", " +
                                  std::to_string(hi) + "]");
  return static_cast<int>(x);
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail_format(file->path(), "missing metadata key '" + key + "'");
  if (v->type == GgufType::ARRAY || v->type == GgufType::STRING) fail_format(file->path(), "metadata key '" + key + "' is not a number");
  return v->number;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail_format(file->path(), "missing metadata key '" + key + "'");
  if (v->type != GgufType::STRING) fail_format(file->path(), "metadata key '" + key + "' is not a string");
  return v->str;
}

GgufFile read_gguf(const std::string& path) {
  GgufFile g;
  g.file = std::make_shared<MappedFile>(path);
  const MappedFile& f = *g.file;
  Cursor c(f);
  if (f.size() < 4 || std::memcmp(f.data(), "GGUF", 4) != 0) fail_format(path, "not a GGUF file (bad magic)");
  c.read<uint32_t>("magic");
  g.version = c.read<uint32_t>("version");
  if (g.version != 2 && g.version != 3)
    throw Error(ErrorCode::kUnsupported, path, "GGUF version " + std::to_string(g.version) + " is not supported (2 or 3)");
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each entry takes at least 8 bytes, so counts beyond size/8 are lies; reject before allocating.
  if (n_tensors > f.size() / 8 || n_kv > f.size() / 8)
    fail_format(path, "header claims " + std::to_string(n_tensors) + " tensors and " + std::to_string(n_kv) +
                          " metadata entries, more than the file can hold");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    GgufValue v;
    v.type = static_cast<GgufType>(c.read<uint32_t>("metadata type"));
    const std::string what = "metadata '" + key + "'";
    if (v.type == GgufType::STRING) {
      v.str = c.read_string(what.c_str());
    } else if (v.type == GgufType::ARRAY) {
      v.elem_type = static_cast<GgufType>(c.read<uint32_t>(what.c_str()));
      uint64_t n = c.read<uint64_t>(what.c_str());
      // Every element takes at least its own size (a string at least its 8-byte length), so a length the
      // rest of the file cannot hold is a lie: refuse it before reserving memory for it.
      const uint64_t min_elem = v.elem_type == GgufType::STRING ? 8 : std::max<uint64_t>(1, value_size(v.elem_type));
      if (n > (f.size() - c.pos()) / min_elem)
        fail_format(path, what + ": array length " + std::to_string(n) + " is more than the rest of the file can hold");
      v.array_size = n;
      if (v.elem_type == GgufType::STRING) {
        v.strings.reserve(n);
        for (uint64_t j = 0; j < n; ++j) v.strings.push_back(c.read_string(what.c_str()));
      } else if (v.elem_type == GgufType::ARRAY) {
        fail_format(path, what + ": nested arrays are not supported");
      } else {
        v.numbers.reserve(n);
        for (uint64_t j = 0; j < n; ++j) v.numbers.push_back(read_number(c, v.elem_type, what.c_str(), &v.is_integer, path));
      }
    } else {
      v.number = read_number(c, v.type, what.c_str(), &v.is_integer, path);
    }
    if (g.kv.count(key)) fail_format(path, "duplicate metadata key '" + key + "'");
    g.kv.emplace(std::move(key), std::move(v));
  }
  if (const GgufValue* a = g.find("general.alignment")) {
    if (!a->is_integer || a->number < 1 || a->number > 65536 || (static_cast<uint64_t>(a->number) & (static_cast<uint64_t>(a->number) - 1)))
      fail_format(path, "general.alignment is " + (a->is_integer ? std::to_string(static_cast<long long>(a->number)) : std::string("not an integer")) +
                            ": it must be a power of two between 1 and 65536");
    g.alignment = static_cast<uint64_t>(a->number);
  }
  std::vector<uint64_t> rel_offsets;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor name");
    const std::string what = "tensor '" + t.name + "'";
    uint32_t n_dims = c.read<uint32_t>(what.c_str());
    if (n_dims == 0 || n_dims > 4) fail_format(path, what + ": " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    uint64_t numel = 1;
    for (uint32_t j = 0; j < n_dims; ++j) {
      int64_t ne = c.read<int64_t>(what.c_str());
      if (ne <= 0 || ne > (int64_t(1) << 40) || numel > (uint64_t(1) << 42) / static_cast<uint64_t>(ne))
        fail_format(path, what + ": dimension " + std::to_string(ne) + " is invalid or overflows");
      numel *= static_cast<uint64_t>(ne);
      t.ne.push_back(ne);
    }
    t.ggml_type = c.read<uint32_t>(what.c_str());
    rel_offsets.push_back(c.read<uint64_t>(what.c_str()));
    // Sizes are computed only for the dtypes we load; others are reported by the loader with their name.
    const uint64_t esz = t.ggml_type == 0 ? 4 : (t.ggml_type == 1 || t.ggml_type == 30) ? 2 : 0;
    t.nbytes = numel * esz;
    g.tensors.push_back(std::move(t));
  }
  g.data_offset = (c.pos() + g.alignment - 1) / g.alignment * g.alignment;
  for (size_t i = 0; i < g.tensors.size(); ++i) {
    GgufTensorInfo& t = g.tensors[i];
    if (rel_offsets[i] % g.alignment != 0)
      fail_format(path, "tensor '" + t.name + "' offset " + std::to_string(rel_offsets[i]) + " is not aligned to " + std::to_string(g.alignment));
    if (rel_offsets[i] > f.size()) fail_format(path, "tensor '" + t.name + "' offset lies outside the file");
    t.offset = g.data_offset + rel_offsets[i];
    f.range(t.offset, t.nbytes, "tensor '" + t.name + "' data");
  }
  return g;
}

}  // namespace ep
