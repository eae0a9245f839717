#include "core/format/gguf_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/format/output_file.h"

namespace ep {

namespace {
template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_str(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}
uint32_t ggml_type(DType t) { return t == DType::F32 ? 0 : t == DType::F16 ? 1 : 30; }
}  // namespace

void GgufWriter::key(const std::string& k, GgufType t) {
  put_str(kv_bytes_, k);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(t));
  ++n_kv_;
}
void GgufWriter::set_string(const std::string& k, const std::string& v) { key(k, GgufType::STRING); put_str(kv_bytes_, v); }
void GgufWriter::set_u32(const std::string& k, uint32_t v) { key(k, GgufType::U32); put(kv_bytes_, v); }
void GgufWriter::set_f32(const std::string& k, float v) { key(k, GgufType::F32); put(kv_bytes_, v); }
void GgufWriter::set_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  key(k, GgufType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufType::I32));
  put<uint64_t>(kv_bytes_, v.size());
  for (int32_t x : v) put(kv_bytes_, x);
}
void GgufWriter::set_f32_array(const std::string& k, const std::vector<float>& v) {
  key(k, GgufType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufType::F32));
  put<uint64_t>(kv_bytes_, v.size());
  for (float x : v) put(kv_bytes_, x);
}
void GgufWriter::set_string_array(const std::string& k, const std::vector<std::string>& v) {
  key(k, GgufType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufType::STRING));
  put<uint64_t>(kv_bytes_, v.size());
  for (const std::string& s : v) put_str(kv_bytes_, s);
}

void GgufWriter::copy_value(const std::string& k, const GgufValue& v) {
  auto put_num = [&](GgufType t, double x) {
    switch (t) {
      case GgufType::U8: put<uint8_t>(kv_bytes_, static_cast<uint8_t>(x)); break;
      case GgufType::I8: put<int8_t>(kv_bytes_, static_cast<int8_t>(x)); break;
      case GgufType::U16: put<uint16_t>(kv_bytes_, static_cast<uint16_t>(x)); break;
      case GgufType::I16: put<int16_t>(kv_bytes_, static_cast<int16_t>(x)); break;
      case GgufType::U32: put<uint32_t>(kv_bytes_, static_cast<uint32_t>(x)); break;
      case GgufType::I32: put<int32_t>(kv_bytes_, static_cast<int32_t>(x)); break;
      case GgufType::U64: put<uint64_t>(kv_bytes_, static_cast<uint64_t>(x)); break;
      case GgufType::I64: put<int64_t>(kv_bytes_, static_cast<int64_t>(x)); break;
      case GgufType::F32: put<float>(kv_bytes_, static_cast<float>(x)); break;
      case GgufType::F64: put<double>(kv_bytes_, x); break;
      case GgufType::BOOL: put<uint8_t>(kv_bytes_, x != 0); break;
      default: break;
    }
  };
  key(k, v.type);
  if (v.type == GgufType::STRING) {
    put_str(kv_bytes_, v.str);
  } else if (v.type == GgufType::ARRAY) {
    put<uint32_t>(kv_bytes_, static_cast<uint32_t>(v.elem_type));
    put<uint64_t>(kv_bytes_, v.array_size);
    if (v.elem_type == GgufType::STRING) for (const std::string& s : v.strings) put_str(kv_bytes_, s);
    else for (double x : v.numbers) put_num(v.elem_type, x);
  } else {
    put_num(v.type, v.number);
  }
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape, DType dtype, const void* data) {
  tensors_.push_back({name, shape, dtype, data, nullptr});
}

void GgufWriter::add_tensor_f32(const std::string& name, const std::vector<int64_t>& shape, DType dtype, std::function<void(float*)> produce) {
  tensors_.push_back({name, shape, dtype, nullptr, std::move(produce)});
}

void GgufWriter::write(const std::string& path) const {
  constexpr uint64_t kAlign = 32;
  std::string head;
  head.append("GGUF", 4);
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, n_kv_);
  head += kv_bytes_;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_str(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    uint64_t n = 1;
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) {
      put<int64_t>(head, *it);
      n *= static_cast<uint64_t>(*it);
    }
    put<uint32_t>(head, ggml_type(t.dtype));
    put<uint64_t>(head, offset);
    sizes.push_back(n * dtype_size(t.dtype));
    offset += (sizes.back() + kAlign - 1) / kAlign * kAlign;
  }
  head.resize((head.size() + kAlign - 1) / kAlign * kAlign, '\0');
  OutputFile f(path);
  f.write(head.data(), head.size());
  static const char zeros[kAlign] = {};
  std::vector<float> f32;
  std::vector<uint16_t> half;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    const void* src = t.data;
    if (t.produce) {
      const size_t n = sizes[i] / dtype_size(t.dtype);
      f32.assign(n, 0.0f);
      t.produce(f32.data());
      src = f32.data();
      if (t.dtype != DType::F32) {
        half.resize(n);
        for (size_t j = 0; j < n; ++j) half[j] = t.dtype == DType::F16 ? f32_to_f16(f32[j]) : f32_to_bf16(f32[j]);
        src = half.data();
      }
    }
    f.write(src, sizes[i]);
    const uint64_t pad = (kAlign - sizes[i] % kAlign) % kAlign;
    f.write(zeros, pad);
  }
  f.close();
}

}  // namespace ep
