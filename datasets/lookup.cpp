// The lookup of MNIST-format files (torch-free): the four names, the directories searched
// without a root, the files of a root.
#include "datasets/lookup.h"

#include <filesystem>

#include "datasets/idx.h"

namespace arceus {

namespace {

namespace fs = std::filesystem;

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

// The IDX files `dir` lacks: neither NAME nor NAME.gz is a regular file there.
std::vector<std::string> missing_idx_files(const fs::path& dir) {
  std::vector<std::string> missing;
  std::error_code ec;
  for (const auto& name : mnist_file_names())
    if (!fs::is_regular_file(dir / name, ec) && !fs::is_regular_file(dir / (name + ".gz"), ec)) missing.push_back(name);
  return missing;
}

}  // namespace

const std::vector<std::string>& mnist_file_names() {
  static const std::vector<std::string> names = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  return names;
}

MnistFiles find_mnist_files(const std::string& root) {
  std::error_code ec;
  if (root.empty()) throw DataError("[data] no dataset directory given (empty root)");
  if (!fs::exists(root, ec)) {
    throw DataError("[data] dataset directory " + quoted(root) + " does not exist");
  }
  if (!fs::is_directory(root, ec)) {
    throw DataError("[data] dataset root " + quoted(root) + " is not a directory");
  }

  const std::vector<std::string>& names = mnist_file_names();
  std::string found[4];
  std::vector<std::string> missing;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string base = (fs::path(root) / names[i]).string();
    if (fs::is_regular_file(base, ec)) {
      found[i] = base;
    } else if (fs::is_regular_file(base + ".gz", ec)) {
      found[i] = base + ".gz";
    } else {
      missing.push_back(base + "(.gz)");
    }
  }
  if (!missing.empty()) {
    std::string msg = "[data] MNIST files not found in " + quoted(root) + ": looked for ";
    for (size_t i = 0; i < missing.size(); ++i) msg += (i ? ", " : "") + missing[i];
    throw DataError(msg);
  }
  return MnistFiles{found[0], found[1], found[2], found[3]};
}

std::vector<std::string> dataset_search_dirs(const std::string& name, const std::string& base) {
  std::string system;
  if (name == "MNIST") {
    system = "/usr/share/datasets/mnist";
  } else if (name == "FashionMNIST") {
    system = "/usr/share/datasets/fashion-mnist";  // the Debian package dataset-fashion-mnist
  } else {
    return {};
  }
  const fs::path torchvision = fs::path(base) / "data" / name;  // torchvision.datasets.<name>(root="data")
  return {(torchvision / "raw").string(), torchvision.string(), system};
}

std::string dataset_root(const std::string& name, const std::string& root, const std::string& base) {
  if (!root.empty()) return root;
  const std::vector<std::string> dirs = dataset_search_dirs(name, base);
  if (dirs.empty()) {
    throw DataError("[data] dataset " + quoted(name) + " has no IDX files to look for (only MNIST and FashionMNIST do)");
  }
  std::vector<std::string> tried;
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) {
      tried.push_back(dir + " (does not exist)");
    } else if (!fs::is_directory(dir, ec)) {
      tried.push_back(dir + " (not a directory)");
    } else if (const auto missing = missing_idx_files(dir); !missing.empty()) {
      tried.push_back(dir + " (lacks " + join(missing) + ")");
    } else {
      return dir;
    }
  }
  throw DataError("[data] " + name + ": no directory holds its four IDX files " + join(mnist_file_names()) +
                  " (each raw or .gz); looked in " + join(tried) + ". Put them in data/" + name +
                  "/raw/ under the working directory (where torchvision keeps them) or set dataset_config.root "
                  "to their directory; nothing is downloaded here");
}

}  // namespace arceus
