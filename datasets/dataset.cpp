// MNIST-format (IDX), synthetic and text datasets as whole contiguous tensors.
#include "datasets/dataset.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "common/splitmix.h"
#include "datasets/idx.h"
#include "datasets/lookup.h"
#include "datasets/text.h"

namespace arceus {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kMnistClasses = 10;

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string shape_string(const std::vector<uint32_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "x" : "") + std::to_string(dims[i]);
  return s;
}

// Number of samples to keep: the first `max` (0 or negative = all; more than available = all).
int64_t keep_count(int64_t available, int64_t max) {
  return max > 0 ? std::min(available, max) : available;
}

// Reads one images/labels pair, validates it and converts the first `keep` samples.
TensorDataset load_pair(const std::string& images_path, const std::string& labels_path,
                        int64_t max_samples, double mean, double stddev, int64_t* features,
                        int64_t* available) {
  const IdxArray images = read_idx(images_path);
  const IdxArray labels = read_idx(labels_path);
  if (images.dims.size() != 3) {
    throw DataError("[data] " + quoted(images_path) + " has shape " + shape_string(images.dims) +
                    "; expected 3-D images [N, rows, cols]");
  }
  if (labels.dims.size() != 1) {
    throw DataError("[data] " + quoted(labels_path) + " has shape " + shape_string(labels.dims) +
                    "; expected 1-D labels [N]");
  }
  const int64_t n = images.dims[0];
  if (int64_t(labels.dims[0]) != n) {
    throw DataError("[data] " + quoted(images_path) + " has " + std::to_string(n) +
                    " images but " + quoted(labels_path) + " has " +
                    std::to_string(labels.dims[0]) + " labels; the counts must match");
  }
  for (size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= kMnistClasses) {
      throw DataError("[data] " + quoted(labels_path) + ": label " +
                      std::to_string(labels.data[i]) + " at index " + std::to_string(i) +
                      " is out of range [0, " + std::to_string(kMnistClasses) + ")");
    }
  }
  const int64_t f = int64_t(images.dims[1]) * int64_t(images.dims[2]);
  if (f <= 0) {
    throw DataError("[data] " + quoted(images_path) + " has empty images (shape " +
                    shape_string(images.dims) + ")");
  }
  const int64_t keep = keep_count(n, max_samples);

  TensorDataset ds;
  // from_blob does not own the bytes; .to() copies them into a fresh contiguous tensor.
  auto* img = const_cast<uint8_t*>(images.data.data());
  ds.inputs = at::from_blob(img, {keep, f}, at::kByte).to(at::kFloat);
  ds.inputs.div_(255.0).sub_(mean).div_(stddev);
  auto* lab = const_cast<uint8_t*>(labels.data.data());
  ds.labels = at::from_blob(lab, {keep}, at::kByte).to(at::kLong);
  *features = f;
  *available = n;
  return ds;
}

std::string count_string(int64_t kept, int64_t available) {
  std::string s = std::to_string(kept);
  if (kept != available) s += " (of " + std::to_string(available) + ")";
  return s;
}

}  // namespace

DataSplits load_dataset(const DatasetConfig& config, uint64_t seed, int64_t context) {
  if (config.name == "synthetic") return make_synthetic(config.synthetic, seed);
  if (config.name == "text") {
    if (context < 1) throw DataError("[data] a text dataset needs the model's context length (got " + std::to_string(context) + ")");
    auto text = std::make_shared<TextData>(load_text(config.source, context));
    DataSplits splits;
    auto [x, y] = fixed_windows(text->val, context, config.max_val_samples);
    splits.val = TensorDataset{x, y};
    splits.features = context;
    splits.classes = text->vocab.size();
    const int64_t per_epoch = text_windows_per_epoch(*text, config.windows_per_epoch, context);
    splits.description = text->description + "; " + std::to_string(per_epoch) + " random windows of " +
                         std::to_string(context) + " per epoch, " + std::to_string(splits.val.size()) +
                         " validation windows";
    splits.text = std::move(text);
    return splits;
  }
  if (config.name != "MNIST" && config.name != "FashionMNIST") {
    throw DataError("[data] unknown dataset " + quoted(config.name) +
                    " (expected MNIST, FashionMNIST, synthetic or text)");
  }

  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  const std::string root = dataset_root(config.name, config.root, ec ? std::string(".") : cwd.string());
  if (config.normalize.mean.size() != 1 || config.normalize.std.size() != 1) {
    throw DataError("[data] " + config.name + " has 1 channel: normalize.mean and normalize.std "
                    "need exactly 1 value each (got " +
                    std::to_string(config.normalize.mean.size()) + " and " +
                    std::to_string(config.normalize.std.size()) + ")");
  }
  const double mean = config.normalize.mean[0];
  const double stddev = config.normalize.std[0];
  if (!(stddev > 0.0)) {
    throw DataError("[data] normalize.std must be > 0 (got " + std::to_string(stddev) + ")");
  }

  const MnistFiles files = find_mnist_files(root);
  DataSplits splits;
  int64_t train_f = 0, val_f = 0, train_n = 0, val_n = 0;
  splits.train = load_pair(files.train_images, files.train_labels, config.max_train_samples, mean,
                           stddev, &train_f, &train_n);
  splits.val = load_pair(files.test_images, files.test_labels, config.max_val_samples, mean,
                         stddev, &val_f, &val_n);
  if (train_f != val_f) {
    throw DataError("[data] " + quoted(files.train_images) + " has " + std::to_string(train_f) +
                    " pixels per image but " + quoted(files.test_images) + " has " +
                    std::to_string(val_f));
  }
  splits.features = train_f;
  splits.classes = kMnistClasses;
  splits.description = config.name + " from " + root + ": " +
                       count_string(splits.train.size(), train_n) + " train, " +
                       count_string(splits.val.size(), val_n) + " val, " +
                       std::to_string(splits.features) + " features, " +
                       std::to_string(splits.classes) + " classes";
  return splits;
}

namespace {

// 64-bit words of a tensor's bytes mixed into h (splitmix64's finaliser per word).
uint64_t mix_tensor(uint64_t h, const at::Tensor& t) {
  if (!t.defined()) return h;
  const at::Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
  for (size_t i = 0; i < n; i += 8) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, std::min<size_t>(8, n - i));
    w += h + 0x9e3779b97f4a7c15ULL;
    w = (w ^ (w >> 30)) * 0xbf58476d1ce4e5b9ULL;
    w = (w ^ (w >> 27)) * 0x94d049bb133111ebULL;
    h = w ^ (w >> 31);
  }
  return h ^ n;
}

}  // namespace

std::string dataset_fingerprint(const DataSplits& d) {
  uint64_t h = 0;
  for (const TensorDataset* s : {&d.train, &d.val}) h = mix_tensor(mix_tensor(h, s->inputs), s->labels);
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

int64_t text_windows_per_epoch(const TextData& text, int64_t windows, int64_t context) {
  return windows > 0 ? windows : std::max<int64_t>(1, text.train.size(0) / context);
}

TensorDataset text_epoch_windows(const TextData& text, int64_t windows, int64_t context, uint64_t seed,
                                 int64_t epoch) {
  const int64_t n = text_windows_per_epoch(text, windows, context);
  // (seed, epoch) -> generator seed, mixed so that nearby seeds differ.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(splitmix64(seed, static_cast<uint64_t>(epoch)));
  auto [x, y] = sample_windows(text.train, n, context, gen);
  return TensorDataset{x, y};
}

DataSplits make_synthetic(const SyntheticConfig& config, uint64_t seed) {
  if (config.train_size <= 0 || config.val_size <= 0 || config.features <= 0 ||
      config.classes < 2 || !(config.noise >= 0.0)) {
    throw DataError("[data] synthetic dataset needs train_size > 0, val_size > 0, features > 0, "
                    "classes >= 2 and noise >= 0 (got " + std::to_string(config.train_size) +
                    ", " + std::to_string(config.val_size) + ", " +
                    std::to_string(config.features) + ", " + std::to_string(config.classes) +
                    ", " + std::to_string(config.noise) + ")");
  }
  // A private generator: the global RNG is untouched, and the draw order below is fixed
  // (centres, then train labels and noise, then val labels and noise).
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  const at::Tensor centres = at::randn({config.classes, config.features}, gen, f32);

  auto make_split = [&](int64_t n) {
    TensorDataset ds;
    ds.labels = at::randint(config.classes, {n}, gen, i64);
    const at::Tensor noise = at::randn({n, config.features}, gen, f32);
    ds.inputs = centres.index_select(0, ds.labels).add_(noise, config.noise).contiguous();
    return ds;
  };

  DataSplits splits;
  splits.train = make_split(config.train_size);
  splits.val = make_split(config.val_size);
  splits.features = config.features;
  splits.classes = config.classes;
  std::ostringstream desc;
  desc << "synthetic (seed " << seed << ", noise " << config.noise << "): " << config.train_size
       << " train, " << config.val_size << " val, " << config.features << " features, "
       << config.classes << " classes";
  splits.description = desc.str();
  return splits;
}

}  // namespace arceus
