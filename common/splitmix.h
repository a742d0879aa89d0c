// splitmix64 (Steele, Lea and Flood, 2014): the project's one seed mixer. Header-only and
// dependency-free, shared by the codec (stochastic rounding), the trainer (seeds per step and
// epoch), the text windows and the GPT's dropout masks.
#pragma once

#include <cstdint>

namespace arceus {

inline constexpr uint64_t kSplitmixGamma = 0x9E3779B97F4A7C15ULL;  // 2^64 / golden ratio

// The splitmix64 finaliser: a bijective 64-bit mix.
inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The `counter`-th output of the splitmix64 stream started at `seed` (counter 0 is the first):
// a counter-based generator, so any element can be drawn independently of the others.
inline uint64_t splitmix64(uint64_t seed, uint64_t counter) {
  return splitmix64_mix(seed + kSplitmixGamma * (counter + 1));
}

}  // namespace arceus
