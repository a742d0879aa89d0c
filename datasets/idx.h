// IDX files (the MNIST format): big-endian magic 0x0000TTDD (TT = element type, DD = number
// of dimensions), DD big-endian uint32 dimensions, then the elements. Only uint8 elements
// (type 0x08) are supported: that is what MNIST and Fashion-MNIST use. Files may be gzip'd.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace arceus {

// Missing, unreadable, truncated or malformed data; the message names the file and the problem.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct IdxArray {
  std::vector<uint32_t> dims;  // e.g. {60000, 28, 28}
  std::vector<uint8_t> data;   // product(dims) elements, row-major
};

// Whole file, transparently gunzipped when it starts with the gzip magic (1f 8b).
std::vector<uint8_t> read_file_maybe_gzip(const std::string& path);
// The same for bytes in memory: gunzipped when they start with the gzip magic, else as they
// are; `name` is used in error messages.
std::vector<uint8_t> maybe_gunzip(std::vector<uint8_t> bytes, const std::string& name);

// Parses IDX bytes; `name` is used in error messages.
IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& name);

IdxArray read_idx(const std::string& path);

// Where the files of MNIST-format datasets are found (find_mnist_files, dataset_root): see
// datasets/lookup.h.

}  // namespace arceus
