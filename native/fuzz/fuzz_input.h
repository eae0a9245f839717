// Fuzz inputs reach the loaders the way real files do: through a path. Each process keeps one scratch file
// in /dev/shm (memory, not disk) that every execution overwrites.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace ep::fuzz {

inline std::string scratch_path(const char* suffix) {
  return "/dev/shm/entroprune-fuzz-" + std::to_string(::getpid()) + suffix;
}

inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

// Runs f; a clean ep::Error is the expected outcome for bad input. Anything else (a crash, a sanitizer
// report, another exception type escaping) is a finding.
template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const ep::Error&) {
  }
}

}  // namespace ep::fuzz
