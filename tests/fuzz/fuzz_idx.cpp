// Fuzz target: the IDX reader (datasets/idx.h), gzip'd or raw, from bytes.
//
// The contract checked: maybe_gunzip and parse_idx return or throw DataError (no other
// exception, no crash, no sanitizer report), and an array they return holds exactly the
// product of its dimensions.
#include <cstddef>
#include <cstdint>

#include "datasets/idx.h"
#include "tests/fuzz/fuzz.h"

using namespace arceus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const IdxArray a = parse_idx(maybe_gunzip(std::vector<uint8_t>(data, data + size), "<fuzz>"), "<fuzz>");
    uint64_t n = 1;
    for (uint32_t d : a.dims) n *= d;
    if (a.dims.empty() || n != a.data.size()) {
      fuzz::violated("parse_idx returned " + std::to_string(a.data.size()) + " bytes for " +
                     std::to_string(a.dims.size()) + " dimensions of product " + std::to_string(n));
    }
  } catch (const DataError&) {
  }
  return 0;
}
