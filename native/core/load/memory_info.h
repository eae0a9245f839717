// How much memory the machine can still give us, so that a run that cannot fit is refused up front with a
// clear message instead of being killed by the OOM killer halfway.
#pragma once
#include <cstdint>
#include <string>

namespace ep {

// ENTROPRUNE_MEMORY_LIMIT (bytes) when set (for tests and for sharing a machine), else MemAvailable from
// /proc/meminfo, else the free physical pages; 0 when unknown (never refuse then). The JS side asks this
// same function, so every check in the program uses one figure.
uint64_t available_memory_bytes();

std::string format_bytes(uint64_t bytes);

}  // namespace ep
