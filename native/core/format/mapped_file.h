// A read-only memory map of a whole file. Weights are used in place from the map whenever their dtype is
// the one the engine computes in, so loading a model costs no resident memory until the data is touched.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ep {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws ep::Error (kIo) naming the file
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Bounds-checked access: throws a format error naming the file and `what` if [offset, offset+len) is
  // outside the file or the sum overflows.
  const uint8_t* range(uint64_t offset, uint64_t len, const std::string& what) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ep
