#include "core/format/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace ep {

SafetensorsFile read_safetensors(const std::string& path) {
  SafetensorsFile s;
  s.file = std::make_shared<MappedFile>(path);
  const MappedFile& f = *s.file;
  uint64_t n;
  std::memcpy(&n, f.range(0, 8, "safetensors header length"), 8);
  if (n > 100u * 1024 * 1024) fail_format(path, "safetensors header length " + std::to_string(n) + " is implausible (over 100 MiB)");
  const char* hdr = reinterpret_cast<const char*>(f.range(8, n, "safetensors JSON header"));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(hdr, hdr + n);
  } catch (const std::exception& e) {
    fail_format(path, std::string("safetensors header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail_format(path, "safetensors header is not a JSON object");
  const uint64_t base = 8 + n, data_size = f.size() - base;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it.value().is_object())
        for (auto m = it.value().begin(); m != it.value().end(); ++m)
          if (m.value().is_string()) s.metadata[m.key()] = m.value().get<std::string>();
      continue;
    }
    const std::string what = "tensor '" + it.key() + "'";
    const nlohmann::json& e = it.value();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets") || !e["dtype"].is_string() ||
        !e["shape"].is_array() || !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
      fail_format(path, what + ": header entry needs dtype, shape and data_offsets [begin, end]");
    SafetensorsEntry t;
    t.name = it.key();
    t.dtype_name = e["dtype"].get<std::string>();
    uint64_t esz = 0;
    if (t.dtype_name == "F32") { t.dtype = DType::F32; esz = 4; t.supported = true; }
    else if (t.dtype_name == "F16") { t.dtype = DType::F16; esz = 2; t.supported = true; }
    else if (t.dtype_name == "BF16") { t.dtype = DType::BF16; esz = 2; t.supported = true; }
    else if (t.dtype_name == "F64" || t.dtype_name == "I64" || t.dtype_name == "U64") esz = 8;
    else if (t.dtype_name == "I32" || t.dtype_name == "U32") esz = 4;
    else if (t.dtype_name == "I16" || t.dtype_name == "U16") esz = 2;
    else if (t.dtype_name == "I8" || t.dtype_name == "U8" || t.dtype_name == "BOOL" || t.dtype_name == "F8_E4M3" || t.dtype_name == "F8_E5M2") esz = 1;
    else fail_format(path, what + ": unknown dtype '" + t.dtype_name + "'");
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) fail_format(path, what + ": shape must hold non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > (uint64_t(1) << 50) / v) fail_format(path, what + ": shape overflows");
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    const auto& o = e["data_offsets"];
    if (!o[0].is_number_unsigned() || !o[1].is_number_unsigned()) fail_format(path, what + ": data_offsets must be non-negative integers");
    const uint64_t b = o[0].get<uint64_t>(), en = o[1].get<uint64_t>();
    if (b > en || en > data_size)
      fail_format(path, what + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] lie outside the data section of " +
                            std::to_string(data_size) + " bytes (truncated file or lying header)");
    if (en - b != numel * esz)
      fail_format(path, what + ": data_offsets span " + std::to_string(en - b) + " bytes but shape and dtype need " + std::to_string(numel * esz));
    t.offset = base + b;
    t.nbytes = en - b;
    spans.emplace_back(b, en);
    s.tensors.emplace(t.name, std::move(t));
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second) fail_format(path, "two tensors overlap in the data section (header is corrupt)");
  return s;
}

}  // namespace ep
