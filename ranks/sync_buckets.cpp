#include "ranks/sync_buckets.h"

namespace arceus {

std::vector<size_t> sync_bucket_of(const std::vector<int64_t>& tensor_floats) {
  std::vector<size_t> out;
  out.reserve(tensor_floats.size());
  size_t bucket = 0;
  int64_t size = 0;  // of the current bucket
  for (size_t i = 0; i < tensor_floats.size(); ++i) {
    const int64_t n = tensor_floats[i];
    if (i > 0 && size > 0 && size + n > kSyncBucketFloats) {
      ++bucket;
      size = 0;
    }
    out.push_back(bucket);
    size += n;
  }
  return out;
}

int64_t sync_padded_floats(int64_t floats, int64_t replicas) {
  const int64_t unit = replicas * kSyncRow;
  return (floats + unit - 1) / unit * unit;
}

}  // namespace arceus
