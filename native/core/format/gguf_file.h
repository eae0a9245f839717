// GGUF (v2/v3) container: metadata key/values and tensor directory, parsed with every length, count and
// offset checked against the file size before use. Only reading here; the writer lives in save_gguf.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/format/mapped_file.h"

namespace ep {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  U64 = 10, I64 = 11, F64 = 12,
};

struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType elem_type = GgufType::U8;  // for arrays
  // Scalars are widened; arrays of numbers are widened element-wise; strings kept as bytes.
  double number = 0;
  bool is_integer = false;
  std::string str;
  std::vector<double> numbers;
  std::vector<std::string> strings;
  size_t array_size = 0;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // GGUF order: fastest-varying first
  uint32_t ggml_type = 0;
  uint64_t offset = 0;      // absolute offset in the file
  uint64_t nbytes = 0;
};

struct GgufFile {
  std::shared_ptr<MappedFile> file;
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;
  std::map<std::string, GgufValue> kv;
  std::vector<GgufTensorInfo> tensors;

  const GgufValue* find(const std::string& key) const;
  // Typed getters that throw a format error naming the key when missing or of the wrong kind.
  int64_t get_int(const std::string& key) const;
  int get_i32(const std::string& key) const;  // get_int, checked to fit an int
  // A number already found (a scalar, or an array element) as an int in [lo, hi], else a format error naming
  // the key: metadata numbers are widened to double and a hostile file can put any value there, so every
  // narrowing cast goes through a range check first.
  int int_in_range(const std::string& key, double x, int64_t lo, int64_t hi) const;
  double get_float(const std::string& key) const;
  std::string get_string(const std::string& key) const;
};

GgufFile read_gguf(const std::string& path);
const char* ggml_type_name(uint32_t t);

}  // namespace ep
