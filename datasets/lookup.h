// Where the IDX files of MNIST and Fashion-MNIST are found: the four file names, the directories
// searched when dataset_config.root is empty, and the files of a root. Torch-free (library
// arceus_idx), so that `arceus serve`'s data-root check (launcher/serve/job_routes.cpp) looks
// the files up exactly as the trainer's load_dataset (datasets/dataset.h) will, without
// including ATen.
// Errors are DataError (datasets/idx.h) naming every place looked at.
#pragma once

#include <string>
#include <vector>

namespace arceus {

// The four files of an MNIST-format dataset, each found as NAME or NAME.gz:
// train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte.
const std::vector<std::string>& mnist_file_names();

// The four files of an MNIST-format dataset, found in `root` as NAME or NAME.gz.
struct MnistFiles {
  std::string train_images, train_labels, test_images, test_labels;
};
// Throws DataError listing every path it looked for when a file is missing.
MnistFiles find_mnist_files(const std::string& root);

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

}  // namespace arceus
