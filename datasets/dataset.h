// Datasets as contiguous tensors (batches are slices, never per-sample loading).
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <string>

#include "config/config.h"

namespace arceus {

struct TensorDataset {
  at::Tensor inputs;  // float32 [N, F], normalised
  at::Tensor labels;  // int64 [N], in [0, classes)
  int64_t size() const { return inputs.size(0); }
};

struct DataSplits {
  TensorDataset train;
  TensorDataset val;
  int64_t features = 0;     // F
  int64_t classes = 0;      // number of label values
  std::string description;  // e.g. "FashionMNIST from /usr/share/...: 60000 train, 10000 val"
};

// Default root for a dataset name ("" when the name has none, e.g. MNIST).
std::string default_dataset_root(const std::string& name);

// Loads MNIST / FashionMNIST (IDX) or generates the synthetic set (deterministic from `seed`).
// Throws DataError (datasets/idx.h) naming the file and problem.
DataSplits load_dataset(const DatasetConfig& config, uint64_t seed);

// Synthetic classification data: class centres ~ N(0,1), x = centre[y] + noise*N(0,1).
// Deterministic from seed; the same seed gives the same tensors on every machine.
DataSplits make_synthetic(const SyntheticConfig& config, uint64_t seed);

}  // namespace arceus
