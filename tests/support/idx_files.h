// IDX files for the dataset tests (test_idx.cpp, test_dataset.cpp): their bytes, written raw or
// gzip'd, and the DataError check. Header-only; needs zlib (arceus_idx links it) and
// datasets/idx.h.
#pragma once

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "datasets/idx.h"
#include "files.h"

namespace arceus::test {

// An IDX file: magic 0x0000 TT DD (element type TT, 0x08 = uint8; DD dimensions), big-endian
// uint32 dimensions, then the data.
inline std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                                      uint8_t type = 0x08) {
  std::vector<uint8_t> b{0, 0, type, uint8_t(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// `bytes` gzip'd into `path`; a test failure naming it when that fails.
inline void write_gz(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size())) << path;
  }
  ASSERT_EQ(gzclose(f), Z_OK) << path;
}

// Runs f, expecting a DataError whose message contains every one of `parts`.
template <class F>
void expect_data_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

}  // namespace arceus::test
