// Datasets as tensors: synthetic generation, IDX loading and normalisation, limits, errors;
// where MNIST / FashionMNIST are looked for without a root.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/idx.h"
#include "support/files.h"
#include "support/idx_files.h"

namespace fs = std::filesystem;
using arceus::DataError;
using namespace arceus::test;  // TempDir, write_raw, write_gz, idx_bytes, expect_data_error

namespace {

// Runs in `dir` until destroyed, then back where it was (load_dataset looks under the
// working directory when a dataset has no root).
class WorkingDirectory {
 public:
  explicit WorkingDirectory(const fs::path& dir) : previous_(fs::current_path()) { fs::current_path(dir); }
  ~WorkingDirectory() {
    std::error_code ec;
    fs::current_path(previous_, ec);
    if (ec) ADD_FAILURE() << "cannot return to " << previous_ << ": " << ec.message();
  }
  WorkingDirectory(const WorkingDirectory&) = delete;
  WorkingDirectory& operator=(const WorkingDirectory&) = delete;

 private:
  fs::path previous_;
};

arceus::SyntheticConfig small_synthetic() {
  arceus::SyntheticConfig c;
  c.train_size = 300;
  c.val_size = 100;
  c.features = 20;
  c.classes = 4;
  c.noise = 1.0;
  return c;
}

// A fresh temp directory holding a tiny MNIST-format dataset (raw IDX files).
class DatasetIdxDir : public ::testing::Test {
 protected:
  static constexpr uint32_t kRows = 2, kCols = 3, kTrain = 7, kVal = 4;

  void SetUp() override {
    train_pixels_ = pixels(kTrain, 11);
    val_pixels_ = pixels(kVal, 5);
    for (uint32_t i = 0; i < kTrain; ++i) train_labels_.push_back(uint8_t(i % 10));
    for (uint32_t i = 0; i < kVal; ++i) val_labels_.push_back(uint8_t(9 - i));
    write("train-images-idx3-ubyte", idx({kTrain, kRows, kCols}, train_pixels_));
    write("train-labels-idx1-ubyte", idx({kTrain}, train_labels_));
    write("t10k-images-idx3-ubyte", idx({kVal, kRows, kCols}, val_pixels_));
    write("t10k-labels-idx1-ubyte", idx({kVal}, val_labels_));
  }
  static std::vector<uint8_t> pixels(uint32_t n, uint32_t step) {
    std::vector<uint8_t> v(size_t(n) * kRows * kCols);
    for (size_t i = 0; i < v.size(); ++i) v[i] = uint8_t((i * step * 37) % 256);
    v[0] = 0;
    v[1] = 255;
    return v;
  }
  static std::vector<uint8_t> idx(const std::vector<uint32_t>& dims,
                                  const std::vector<uint8_t>& data) {
    return idx_bytes(dims, data);
  }
  void write(const std::string& name, const std::vector<uint8_t>& bytes) {
    write_raw(fs::path(dir_) / name, bytes);
  }

  arceus::DatasetConfig config() const {
    arceus::DatasetConfig c;
    c.name = "MNIST";
    c.root = dir_;
    return c;
  }

  // (x/255 - mean) / std, computed in the test from the raw bytes (float64, then compared).
  static at::Tensor expected(const std::vector<uint8_t>& px, int64_t n, double mean, double sd) {
    std::vector<double> v;
    for (int64_t i = 0; i < n * kRows * kCols; ++i) v.push_back((px[i] / 255.0 - mean) / sd);
    return at::tensor(v, at::kDouble).reshape({n, int64_t(kRows * kCols)});
  }

  TempDir tmp_{"arceus_dataset_"};
  std::string dir_ = tmp_.str();
  std::vector<uint8_t> train_pixels_, val_pixels_, train_labels_, val_labels_;
};

}  // namespace

TEST(DatasetSynthetic, ShapesAndDtypes) {
  const auto cfg = small_synthetic();
  const auto s = arceus::make_synthetic(cfg, 42);
  EXPECT_EQ(s.features, 20);
  EXPECT_EQ(s.classes, 4);
  EXPECT_EQ(s.train.inputs.sizes(), (std::vector<int64_t>{300, 20}));
  EXPECT_EQ(s.train.labels.sizes(), (std::vector<int64_t>{300}));
  EXPECT_EQ(s.val.inputs.sizes(), (std::vector<int64_t>{100, 20}));
  EXPECT_EQ(s.val.labels.sizes(), (std::vector<int64_t>{100}));
  for (const auto* ds : {&s.train, &s.val}) {
    EXPECT_EQ(ds->inputs.scalar_type(), at::kFloat);
    EXPECT_EQ(ds->labels.scalar_type(), at::kLong);
    EXPECT_TRUE(ds->inputs.is_contiguous());
    EXPECT_TRUE(ds->labels.is_contiguous());
    EXPECT_GE(ds->labels.min().item<int64_t>(), 0);
    EXPECT_LT(ds->labels.max().item<int64_t>(), 4);
    EXPECT_TRUE(ds->inputs.isfinite().all().item<bool>());
  }
  // Every class appears in the training split.
  EXPECT_EQ(at::bincount(s.train.labels, {}, 4).gt(0).sum().item<int64_t>(), 4);
  EXPECT_NE(s.description.find("synthetic"), std::string::npos) << s.description;
  EXPECT_NE(s.description.find("300 train"), std::string::npos) << s.description;
}

TEST(DatasetSynthetic, SameSeedSameTensors) {
  const auto cfg = small_synthetic();
  const auto a = arceus::make_synthetic(cfg, 7);
  at::manual_seed(12345);  // the global RNG must not matter
  at::randn({100});
  const auto b = arceus::make_synthetic(cfg, 7);
  EXPECT_TRUE(a.train.inputs.equal(b.train.inputs));
  EXPECT_TRUE(a.train.labels.equal(b.train.labels));
  EXPECT_TRUE(a.val.inputs.equal(b.val.inputs));
  EXPECT_TRUE(a.val.labels.equal(b.val.labels));
}

TEST(DatasetSynthetic, DifferentSeedDifferentTensors) {
  const auto cfg = small_synthetic();
  const auto a = arceus::make_synthetic(cfg, 1);
  const auto b = arceus::make_synthetic(cfg, 2);
  EXPECT_FALSE(a.train.inputs.equal(b.train.inputs));
  EXPECT_FALSE(a.train.labels.equal(b.train.labels));
  EXPECT_FALSE(a.val.inputs.equal(b.val.inputs));
}

TEST(DatasetSynthetic, TrainAndValAreDifferentDraws) {
  auto cfg = small_synthetic();
  cfg.val_size = cfg.train_size;
  const auto s = arceus::make_synthetic(cfg, 3);
  EXPECT_FALSE(s.train.inputs.equal(s.val.inputs));
}

TEST(DatasetSynthetic, LinearlyLearnableAtDefaultSize) {
  // Defaults: 784 features, 10 classes, noise 1.0. A nearest-class-mean classifier (linear)
  // fitted on train must be far above chance (10%) on val.
  arceus::SyntheticConfig cfg;
  cfg.train_size = 2000;
  cfg.val_size = 500;
  const auto s = arceus::make_synthetic(cfg, 42);
  ASSERT_EQ(s.features, 784);
  const at::Tensor onehot = at::one_hot(s.train.labels, 10).to(at::kFloat);   // [N, 10]
  const at::Tensor means = onehot.t().matmul(s.train.inputs)                  // [10, F]
                               .div(onehot.sum(0).unsqueeze(1));
  const at::Tensor dist = at::cdist(s.val.inputs, means);                     // [M, 10]
  const double acc = dist.argmin(1).eq(s.val.labels).to(at::kFloat).mean().item<double>();
  EXPECT_GT(acc, 0.9) << "nearest-mean accuracy " << acc;
}

TEST(DatasetSynthetic, ViaLoadDatasetIgnoresRoot) {
  arceus::DatasetConfig c;
  c.name = "synthetic";
  c.synthetic = small_synthetic();
  const auto a = arceus::load_dataset(c, 9);
  const auto b = arceus::make_synthetic(c.synthetic, 9);
  EXPECT_TRUE(a.train.inputs.equal(b.train.inputs));
  EXPECT_TRUE(arceus::dataset_search_dirs("synthetic", ".").empty());
}

TEST(DatasetSynthetic, RejectsBadConfig) {
  auto c = small_synthetic();
  c.classes = 0;
  EXPECT_THROW(arceus::make_synthetic(c, 1), DataError);
}

TEST_F(DatasetIdxDir, LoadsAndNormalises) {
  auto c = config();
  c.normalize.mean = {0.1307};
  c.normalize.std = {0.3081};
  const auto s = arceus::load_dataset(c, 0);
  EXPECT_EQ(s.features, 6);
  EXPECT_EQ(s.classes, 10);
  ASSERT_EQ(s.train.inputs.sizes(), (std::vector<int64_t>{kTrain, 6}));
  ASSERT_EQ(s.val.inputs.sizes(), (std::vector<int64_t>{kVal, 6}));
  EXPECT_EQ(s.train.inputs.scalar_type(), at::kFloat);
  EXPECT_EQ(s.train.labels.scalar_type(), at::kLong);
  EXPECT_TRUE(s.train.inputs.is_contiguous());
  EXPECT_TRUE(s.val.inputs.is_contiguous());
  EXPECT_TRUE(s.train.inputs.to(at::kDouble).allclose(
      expected(train_pixels_, kTrain, 0.1307, 0.3081), 1e-6, 1e-6));
  EXPECT_TRUE(s.val.inputs.to(at::kDouble).allclose(
      expected(val_pixels_, kVal, 0.1307, 0.3081), 1e-6, 1e-6));
  EXPECT_TRUE(s.train.labels.equal(at::tensor(std::vector<int64_t>(train_labels_.begin(),
                                                                   train_labels_.end()))));
  EXPECT_TRUE(s.val.labels.equal(at::tensor(std::vector<int64_t>(val_labels_.begin(),
                                                                 val_labels_.end()))));
  EXPECT_NE(s.description.find("MNIST from " + dir_), std::string::npos) << s.description;
  EXPECT_NE(s.description.find("7 train, 4 val, 6 features, 10 classes"), std::string::npos)
      << s.description;
}

TEST_F(DatasetIdxDir, DefaultNormalisationIsPlainScaling) {
  const auto s = arceus::load_dataset(config(), 0);  // mean 0, std 1
  EXPECT_FLOAT_EQ(s.train.inputs[0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(s.train.inputs[0][1].item<float>(), 1.0f);
  EXPECT_GE(s.train.inputs.min().item<float>(), 0.0f);
  EXPECT_LE(s.train.inputs.max().item<float>(), 1.0f);
}

TEST_F(DatasetIdxDir, MaxSamplesTakesTheFirstN) {
  auto c = config();
  c.max_train_samples = 3;
  c.max_val_samples = 100;  // more than available: all of them
  const auto full = arceus::load_dataset(config(), 0);
  const auto s = arceus::load_dataset(c, 0);
  EXPECT_EQ(s.train.size(), 3);
  EXPECT_EQ(s.val.size(), kVal);
  EXPECT_TRUE(s.train.inputs.equal(full.train.inputs.slice(0, 0, 3)));
  EXPECT_TRUE(s.train.labels.equal(full.train.labels.slice(0, 0, 3)));
  EXPECT_TRUE(s.train.inputs.is_contiguous());
  EXPECT_NE(s.description.find("3 (of 7) train"), std::string::npos) << s.description;
}

TEST_F(DatasetIdxDir, MultiChannelNormalisationIsAnError) {
  auto c = config();
  c.normalize.mean = {0.5, 0.5, 0.5};
  c.normalize.std = {0.2, 0.2, 0.2};
  expect_data_error([&] { arceus::load_dataset(c, 0); }, {"1 channel"});
}

TEST_F(DatasetIdxDir, CountMismatchNamesBothFiles) {
  write("t10k-labels-idx1-ubyte", idx({3}, {1, 2, 3}));
  expect_data_error([&] { arceus::load_dataset(config(), 0); },
                    {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "4 images", "3 labels"});
}

TEST_F(DatasetIdxDir, LabelOutOfRange) {
  write("train-labels-idx1-ubyte", idx({kTrain}, {0, 1, 2, 10, 4, 5, 6}));
  expect_data_error([&] { arceus::load_dataset(config(), 0); },
                    {"train-labels-idx1-ubyte", "label 10 at index 3"});
}

TEST_F(DatasetIdxDir, ImagesMustBeThreeDimensional) {
  write("train-images-idx3-ubyte", idx({kTrain, 6}, train_pixels_));
  expect_data_error([&] { arceus::load_dataset(config(), 0); },
                    {"train-images-idx3-ubyte", "7x6", "3-D"});
}

TEST_F(DatasetIdxDir, MissingFileListed) {
  fs::remove(fs::path(dir_) / "t10k-images-idx3-ubyte");
  expect_data_error([&] { arceus::load_dataset(config(), 0); },
                    {"MNIST files not found", "t10k-images-idx3-ubyte(.gz)"});
}

TEST(DatasetMnist, UnknownName) {
  arceus::DatasetConfig c;
  c.name = "CIFAR10";
  expect_data_error([&] { arceus::load_dataset(c, 0); }, {"CIFAR10"});
}

// Where the Debian package dataset-fashion-mnist installs its four .gz files.
const char* const kDebianFashion = "/usr/share/datasets/fashion-mnist";

TEST(DatasetFashionMnist, RealLoad) {
  if (!fs::is_directory(kDebianFashion)) {
    GTEST_SKIP() << kDebianFashion << " not present (Debian package dataset-fashion-mnist not installed)";
  }
  // A working directory without data/FashionMNIST: the lookup ends at the Debian package.
  arceus::DataSplits s;
  {
    TempDir scratch("arceus_fashion_");
    WorkingDirectory in(scratch.path());
    arceus::DatasetConfig c;  // name FashionMNIST, root "": looked up
    s = arceus::load_dataset(c, 0);
  }
  EXPECT_EQ(s.train.size(), 60000);
  EXPECT_EQ(s.val.size(), 10000);
  EXPECT_EQ(s.features, 784);
  EXPECT_EQ(s.classes, 10);
  EXPECT_EQ(s.train.inputs.sizes(), (std::vector<int64_t>{60000, 784}));
  EXPECT_EQ(s.train.labels.sizes(), (std::vector<int64_t>{60000}));
  EXPECT_GE(s.train.inputs.min().item<float>(), 0.0f);
  EXPECT_LE(s.train.inputs.max().item<float>(), 1.0f);
  EXPECT_EQ(s.val.labels.max().item<int64_t>(), 9);
  EXPECT_EQ(s.description,
            "FashionMNIST from /usr/share/datasets/fashion-mnist: 60000 train, 10000 val, "
            "784 features, 10 classes");
}

// ---------------------------------------------------------------------------------------------
// MNIST / FashionMNIST without a root: torchvision's data/<name>/raw and data/<name> under the
// working directory (`base`), then the Debian directory. Each set written here has its own
// number of training samples, so the loaded size tells which directory was read.

class DatasetLookup : public ::testing::Test {
 protected:
  static constexpr uint32_t kVal = 3;

  std::string at(const std::string& rel) const { return (fs::path(base_) / rel).string(); }

  // A 2x2-pixel IDX set of `train` training and kVal test samples in base/<rel>: every file
  // gzip'd when `gz` ("NAME.gz"), and `skip` (a file name) left out.
  void place(const std::string& rel, uint32_t train, bool gz, const std::string& skip = "") {
    const fs::path dir = at(rel);
    fs::create_directories(dir);
    const std::vector<std::pair<std::string, std::vector<uint8_t>>> files = {
        {"train-images-idx3-ubyte", idx_bytes({train, 2, 2}, std::vector<uint8_t>(size_t(train) * 4, 200))},
        {"train-labels-idx1-ubyte", idx_bytes({train}, std::vector<uint8_t>(train, 1))},
        {"t10k-images-idx3-ubyte", idx_bytes({kVal, 2, 2}, std::vector<uint8_t>(size_t(kVal) * 4, 100))},
        {"t10k-labels-idx1-ubyte", idx_bytes({kVal}, std::vector<uint8_t>(kVal, 2))},
    };
    for (const auto& [name, bytes] : files) {
      if (name == skip) continue;
      if (gz) {
        write_gz(dir / (name + ".gz"), bytes);
      } else {
        write_raw(dir / name, bytes);
      }
    }
  }

  // The training samples of `name` read from the directory the lookup finds under base_.
  int64_t train_size(const std::string& name) const {
    arceus::DatasetConfig c;
    c.name = name;
    c.root = arceus::dataset_root(name, "", base_);
    return arceus::load_dataset(c, 0).train.size();
  }

  TempDir tmp_{"arceus_lookup_"};
  std::string base_ = fs::canonical(tmp_.path()).string();  // what the working directory reads back as
};

TEST_F(DatasetLookup, SearchDirsAreTorchvisionsThenDebians) {
  EXPECT_EQ(arceus::dataset_search_dirs("MNIST", base_),
            (std::vector<std::string>{at("data/MNIST/raw"), at("data/MNIST"), "/usr/share/datasets/mnist"}));
  EXPECT_EQ(arceus::dataset_search_dirs("FashionMNIST", base_),
            (std::vector<std::string>{at("data/FashionMNIST/raw"), at("data/FashionMNIST"), kDebianFashion}));
  for (const char* other : {"synthetic", "text", "CIFAR10"})
    EXPECT_TRUE(arceus::dataset_search_dirs(other, base_).empty()) << other;
}

TEST_F(DatasetLookup, RawComesBeforeItsParent) {
  place("data/MNIST", 5, false);
  EXPECT_EQ(arceus::dataset_root("MNIST", "", base_), at("data/MNIST"));
  EXPECT_EQ(train_size("MNIST"), 5);
  place("data/MNIST/raw", 7, false);
  EXPECT_EQ(arceus::dataset_root("MNIST", "", base_), at("data/MNIST/raw"));
  EXPECT_EQ(train_size("MNIST"), 7);
}

TEST_F(DatasetLookup, GzipFilesAndMixturesAreFound) {
  place("data/MNIST/raw", 6, /*gz=*/true);
  EXPECT_EQ(arceus::dataset_root("MNIST", "", base_), at("data/MNIST/raw"));
  EXPECT_EQ(train_size("MNIST"), 6);
  // Two raw, two gzip'd: each file is found as NAME or NAME.gz.
  fs::remove_all(at("data/MNIST/raw"));
  place("data/MNIST/raw", 4, false);
  for (const std::string name : {"train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"}) {
    const std::string raw = at("data/MNIST/raw/" + name);
    write_gz(raw + ".gz", arceus::read_file_maybe_gzip(raw));
    fs::remove(raw);
  }
  EXPECT_EQ(train_size("MNIST"), 4);
}

TEST_F(DatasetLookup, AnIncompleteDirectoryIsPassedOver) {
  place("data/MNIST/raw", 7, false, "t10k-labels-idx1-ubyte");
  place("data/MNIST", 5, true);
  EXPECT_EQ(arceus::dataset_root("MNIST", "", base_), at("data/MNIST"));
  EXPECT_EQ(train_size("MNIST"), 5);
}

TEST_F(DatasetLookup, NothingFoundNamesEveryPlaceAndTheFourFiles) {
  place("data/MNIST/raw", 7, false, "t10k-labels-idx1-ubyte");  // and data/MNIST, empty
  std::string message;
  try {
    const std::string found = arceus::dataset_root("MNIST", "", base_);
    if (found == "/usr/share/datasets/mnist") GTEST_SKIP() << found << " holds MNIST on this machine: nothing to miss";
    FAIL() << "an incomplete directory was taken: " << found;
  } catch (const DataError& e) {
    message = e.what();
  }
  for (const std::string& part :
       {at("data/MNIST/raw") + " (lacks t10k-labels-idx1-ubyte)",
        at("data/MNIST") + " (lacks train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                           "t10k-labels-idx1-ubyte)",
        std::string("/usr/share/datasets/mnist ("),
        std::string("its four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                    "t10k-labels-idx1-ubyte (each raw or .gz)"),
        std::string("data/MNIST/raw/ under the working directory"), std::string("dataset_config.root")})
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;

  // The same through load_dataset from a working directory with no data/ at all.
  fs::remove_all(at("data"));
  arceus::DatasetConfig c;
  c.name = "MNIST";
  WorkingDirectory in(base_);
  expect_data_error([&] { arceus::load_dataset(c, 0); },
                    {at("data/MNIST/raw") + " (does not exist)", at("data/MNIST") + " (does not exist)",
                     "/usr/share/datasets/mnist (", "t10k-labels-idx1-ubyte", "dataset_config.root"});
}

TEST_F(DatasetLookup, AGivenRootIsUsedAsIs) {
  place("data/MNIST/raw", 7, false);
  EXPECT_EQ(arceus::dataset_root("MNIST", "/somewhere/else", base_), "/somewhere/else");
}

TEST_F(DatasetLookup, FashionMnistTorchvisionLayoutComesBeforeDebian) {
  place("data/FashionMNIST", 5, true);
  EXPECT_EQ(arceus::dataset_root("FashionMNIST", "", base_), at("data/FashionMNIST"));
  EXPECT_EQ(train_size("FashionMNIST"), 5);
  place("data/FashionMNIST/raw", 8, false);
  EXPECT_EQ(arceus::dataset_root("FashionMNIST", "", base_), at("data/FashionMNIST/raw"));
  EXPECT_EQ(train_size("FashionMNIST"), 8);
  fs::remove_all(at("data/FashionMNIST"));
  if (!fs::is_directory(kDebianFashion)) {
    expect_data_error([&] { arceus::dataset_root("FashionMNIST", "", base_); }, {at("data/FashionMNIST/raw"), kDebianFashion});
  } else {
    EXPECT_EQ(arceus::dataset_root("FashionMNIST", "", base_), kDebianFashion);
  }
}

// The production path: load_dataset with no root looks under the working directory.
TEST_F(DatasetLookup, LoadDatasetLooksUnderTheWorkingDirectory) {
  place("data/MNIST/raw", 7, true);
  arceus::DatasetConfig c;
  c.name = "MNIST";
  arceus::DataSplits s;
  {
    WorkingDirectory in(base_);
    s = arceus::load_dataset(c, 0);
  }
  EXPECT_EQ(s.train.size(), 7);
  EXPECT_EQ(s.val.size(), kVal);
  EXPECT_EQ(s.features, 4);
  EXPECT_NE(s.description.find("MNIST from " + at("data/MNIST/raw") + ": 7 train"), std::string::npos) << s.description;
}

// Fashion-MNIST's files under MNIST's names (they are the same names) in data/MNIST/raw: what
// a user of the original has after torchvision downloaded MNIST there.
TEST_F(DatasetLookup, FashionMnistFilesStandInForMnist) {
  if (!fs::is_directory(kDebianFashion)) GTEST_SKIP() << kDebianFashion << " not present (dataset-fashion-mnist)";
  fs::create_directories(at("data/MNIST/raw"));
  for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                           "t10k-labels-idx1-ubyte.gz"})
    fs::copy_file(fs::path(kDebianFashion) / name, at("data/MNIST/raw/" + std::string(name)));
  arceus::DatasetConfig mnist;
  mnist.name = "MNIST";
  arceus::DataSplits s;
  {
    WorkingDirectory in(base_);
    s = arceus::load_dataset(mnist, 0);
  }
  EXPECT_EQ(s.train.size(), 60000);
  EXPECT_EQ(s.val.size(), 10000);
  EXPECT_EQ(s.features, 784);
  EXPECT_EQ(s.classes, 10);
  arceus::DatasetConfig fashion;
  fashion.root = kDebianFashion;
  const auto f = arceus::load_dataset(fashion, 0);
  EXPECT_TRUE(s.train.inputs.equal(f.train.inputs));
  EXPECT_TRUE(s.val.labels.equal(f.val.labels));
}
