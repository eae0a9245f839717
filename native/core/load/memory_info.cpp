#include "core/load/memory_info.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <unistd.h>

namespace ep {

uint64_t available_memory_bytes() {
  if (const char* limit = std::getenv("ENTROPRUNE_MEMORY_LIMIT"); limit && *limit) return std::strtoull(limit, nullptr, 10);
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  // No /proc/meminfo (not Linux): free physical pages, what Node's os.freemem() reports.
  const long pages = ::sysconf(_SC_AVPHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

std::string format_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof(buf), "%.1f GiB", b / double(1ull << 30));
  else std::snprintf(buf, sizeof(buf), "%.1f MiB", b / double(1ull << 20));
  return buf;
}

}  // namespace ep
