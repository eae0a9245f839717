#include "core/format/output_file.h"

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace ep {

OutputFile::OutputFile(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) throw Error(ErrorCode::kIo, path, std::string("cannot create: ") + std::strerror(errno));
}

OutputFile::~OutputFile() {
  if (f_) std::fclose(f_);
}

void OutputFile::fail(const char* what) {
  const int e = errno;
  if (f_) std::fclose(f_);
  f_ = nullptr;
  throw Error(ErrorCode::kIo, path_, std::string(what) + " failed: " + std::strerror(e) + " (disk full?)");
}

void OutputFile::write(const void* data, size_t bytes) {
  if (bytes && std::fwrite(data, 1, bytes, f_) != bytes) fail("write");
}

void OutputFile::close() {
  if (std::fflush(f_) != 0) fail("flush");
  FILE* f = f_;
  f_ = nullptr;
  if (std::fclose(f) != 0) {
    f_ = nullptr;
    throw Error(ErrorCode::kIo, path_, std::string("close failed: ") + std::strerror(errno) + " (disk full?)");
  }
}

}  // namespace ep
