// safetensors: u64 little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then
// raw data. Every entry is checked against the file size, its dtype and shape, and for overlap.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/format/dtype.h"
#include "core/format/mapped_file.h"

namespace ep {

struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;  // as written, e.g. "F32", "I8"
  bool supported = false;  // F32 / F16 / BF16
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute offset in the file
  uint64_t nbytes = 0;
};

struct SafetensorsFile {
  std::shared_ptr<MappedFile> file;
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
};

SafetensorsFile read_safetensors(const std::string& path);

}  // namespace ep
