#include "core/memory_info.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace ep {

uint64_t available_memory_bytes() {
  if (const char* limit = std::getenv("ENTROPRUNE_MEMORY_LIMIT"); limit && *limit) return std::strtoull(limit, nullptr, 10);
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

std::string format_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof(buf), "%.1f GiB", b / double(1ull << 30));
  else std::snprintf(buf, sizeof(buf), "%.1f MiB", b / double(1ull << 20));
  return buf;
}

}  // namespace ep
