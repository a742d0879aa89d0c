// What the fuzz targets share: the input as text, and a property violation that aborts (so
// that libFuzzer keeps the input and reports it like a crash).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace arceus::fuzz {

inline std::string text(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

// Splits at NUL bytes: "a\0b" -> {"a", "b"}.
inline std::vector<std::string> split_nul(const std::string& s) {
  std::vector<std::string> parts(1);
  for (char c : s) {
    if (c == '\0') parts.emplace_back();
    else parts.back() += c;
  }
  return parts;
}

[[noreturn]] inline void violated(const std::string& what) {
  std::fprintf(stderr, "\n[fuzz] property violated: %s\n", what.c_str());
  std::abort();
}

}  // namespace arceus::fuzz
