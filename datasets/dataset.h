// Datasets as contiguous tensors (batches are slices, never per-sample loading).
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "datasets/lookup.h"  // dataset_root: where load_dataset reads MNIST-format files

namespace arceus {

struct TextData;  // datasets/text.h

struct TensorDataset {
  at::Tensor inputs;  // float32 [N, F], normalised (text: int64 token ids [N, context])
  at::Tensor labels;  // int64 [N], in [0, classes) (text: the next tokens, [N, context])
  int64_t size() const { return inputs.defined() ? inputs.size(0) : 0; }
};

struct DataSplits {
  TensorDataset train;      // text: empty (windows are drawn per epoch: text_epoch_windows)
  TensorDataset val;        // text: consecutive windows of the validation split
  int64_t features = 0;     // F (text: the context length)
  int64_t classes = 0;      // number of label values (text: the vocabulary size)
  std::shared_ptr<const TextData> text;  // name text: vocabulary and token ids
  std::string description;  // e.g. "FashionMNIST from /usr/share/...: 60000 train, 10000 val"
};

// Loads MNIST / FashionMNIST (IDX; without a root, dataset_root from the working directory),
// generates the synthetic set (deterministic from `seed`), or reads a text (name text:
// `context` is the model's, the window length). Throws DataError (datasets/idx.h) naming the
// file and problem.
DataSplits load_dataset(const DatasetConfig& config, uint64_t seed, int64_t context = 0);

// A checksum of the loaded data (every input and label of both splits, as the trainer sees
// them) as 16 hex digits: two machines that load the same files (or generate the same synthetic
// set) get the same one (dataset_config.feed local compares each first stage's with rank 0's).
std::string dataset_fingerprint(const DataSplits& data);

// Training windows per epoch of a text: `windows`, or when 0 the train characters / context
// (at least 1).
int64_t text_windows_per_epoch(const TextData& text, int64_t windows, int64_t context);

// The training windows of epoch `epoch` of a text: text_windows_per_epoch random windows, from
// a generator seeded by (seed, epoch): the same on every machine.
TensorDataset text_epoch_windows(const TextData& text, int64_t windows, int64_t context, uint64_t seed,
                                 int64_t epoch);

// Synthetic classification data: class centres ~ N(0,1), x = centre[y] + noise*N(0,1).
// Deterministic from seed; the same seed gives the same tensors on every machine.
DataSplits make_synthetic(const SyntheticConfig& config, uint64_t seed);

}  // namespace arceus
