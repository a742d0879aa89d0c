// Datasets as contiguous tensors (batches are slices, never per-sample loading).
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

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

// Where the IDX files of MNIST / FashionMNIST are looked for when dataset_config.root is empty,
// in order: where torchvision keeps them under `base`, <base>/data/<name>/raw then
// <base>/data/<name>, then the Debian package's directory (/usr/share/datasets/mnist,
// /usr/share/datasets/fashion-mnist). Empty for the other names (synthetic, text). load_dataset
// passes the working directory as `base` (the trainer loads the data on rank 0; so does
// `arceus serve`'s check, in the same process).
std::vector<std::string> dataset_search_dirs(const std::string& name, const std::string& base);

// The directory dataset `name` is read from: `root` when not empty (find_mnist_files then says
// what it lacks), else the first of dataset_search_dirs(name, base) holding all four IDX files
// (each raw or .gz). Throws DataError naming every directory tried, what each lacked, and the
// four file names.
std::string dataset_root(const std::string& name, const std::string& root, const std::string& base);

// Loads MNIST / FashionMNIST (IDX; without a root, dataset_root from the working directory),
// generates the synthetic set (deterministic from `seed`), or reads a text (name text:
// `context` is the model's, the window length). Throws DataError (datasets/idx.h) naming the
// file and problem.
DataSplits load_dataset(const DatasetConfig& config, uint64_t seed, int64_t context = 0);

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
