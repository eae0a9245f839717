// The one pseudo-random generator of the core: splitmix64, with uniform and Box-Muller normal draws. Portable
// and reproducible (std::normal_distribution differs across standard libraries), so a seed gives the same
// random projection (capture) and the same synthetic weights on every machine.
#pragma once
#include <cmath>
#include <cstdint>

namespace ep {

struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // In (0, 1]: never 0, so log(uniform()) is finite.
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0) + 1e-300; }
};

}  // namespace ep
