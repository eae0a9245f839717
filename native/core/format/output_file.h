// A file being written by a saver: every failed write or close throws ep::Error naming the file and the
// system's reason (a full disk shows up here), so no writer silently leaves a short file behind.
#pragma once
#include <cstdio>
#include <string>

namespace ep {

class OutputFile {
 public:
  explicit OutputFile(const std::string& path);  // throws ep::Error (kIo)
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  void write(const void* data, size_t bytes);
  void close();  // flush and close; throws on failure

 private:
  [[noreturn]] void fail(const char* what);
  std::string path_;
  FILE* f_ = nullptr;
};

}  // namespace ep
