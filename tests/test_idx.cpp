// IDX reading: raw and gzip'd files, strict header checks, MNIST file discovery.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "datasets/idx.h"
#include "datasets/lookup.h"
#include "support/files.h"
#include "support/idx_files.h"

namespace fs = std::filesystem;
using arceus::DataError;
using namespace arceus::test;  // TempDir, read_raw, write_raw, write_gz, idx_bytes, expect_data_error

namespace {

// A fresh directory under the system temp dir, removed when the fixture ends.
class IdxTempDir : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return tmp_.file(name); }
  TempDir tmp_{"arceus_idx_"};
  std::string dir_ = tmp_.str();
};

std::vector<uint8_t> iota_bytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 + 3);
  return v;
}

}  // namespace

using IdxRead = IdxTempDir;

TEST_F(IdxRead, ParsesRawFile) {
  const auto data = iota_bytes(3 * 4 * 5);
  write_raw(path("a-idx3-ubyte"), idx_bytes({3, 4, 5}, data));
  const auto arr = arceus::read_idx(path("a-idx3-ubyte"));
  EXPECT_EQ(arr.dims, (std::vector<uint32_t>{3, 4, 5}));
  EXPECT_EQ(arr.data, data);
}

TEST_F(IdxRead, ParsesGzipFileTransparently) {
  const auto data = iota_bytes(300 * 17);
  write_gz(path("b.gz"), idx_bytes({300, 17}, data));
  const auto raw = read_raw(path("b.gz"));
  ASSERT_GE(raw.size(), 2u);
  EXPECT_EQ(raw[0], 0x1f);  // really gzip'd on disk
  EXPECT_EQ(raw[1], 0x8b);
  const auto arr = arceus::read_idx(path("b.gz"));
  EXPECT_EQ(arr.dims, (std::vector<uint32_t>{300, 17}));
  EXPECT_EQ(arr.data, data);
}

TEST_F(IdxRead, LargeGzipGrowsOutput) {
  // Highly compressible: the output is far more than any small initial guess.
  std::vector<uint8_t> data(2000 * 784, 0);
  for (size_t i = 0; i < data.size(); i += 97) data[i] = uint8_t(i);
  write_gz(path("big.gz"), idx_bytes({2000, 28, 28}, data));
  const auto arr = arceus::read_idx(path("big.gz"));
  EXPECT_EQ(arr.dims, (std::vector<uint32_t>{2000, 28, 28}));
  EXPECT_EQ(arr.data, data);
}

TEST_F(IdxRead, ConcatenatedGzipMembers) {
  const auto bytes = idx_bytes({10}, iota_bytes(10));
  const std::vector<uint8_t> first(bytes.begin(), bytes.begin() + 6);
  const std::vector<uint8_t> second(bytes.begin() + 6, bytes.end());
  write_gz(path("p1.gz"), first);
  write_gz(path("p2.gz"), second);
  auto cat = read_raw(path("p1.gz"));
  const auto p2 = read_raw(path("p2.gz"));
  cat.insert(cat.end(), p2.begin(), p2.end());
  write_raw(path("cat.gz"), cat);
  EXPECT_EQ(arceus::read_file_maybe_gzip(path("cat.gz")), bytes);
  EXPECT_EQ(arceus::read_idx(path("cat.gz")).data, iota_bytes(10));
}

TEST_F(IdxRead, TruncatedGzipIsDataError) {
  write_gz(path("full.gz"), idx_bytes({500, 10}, iota_bytes(5000)));
  auto gz = read_raw(path("full.gz"));
  gz.resize(gz.size() / 2);
  write_raw(path("trunc.gz"), gz);
  expect_data_error([&] { arceus::read_file_maybe_gzip(path("trunc.gz")); },
                    {path("trunc.gz"), "truncated or corrupt gzip stream", "zlib:"});
}

TEST_F(IdxRead, CorruptGzipIsDataError) {
  write_gz(path("full.gz"), idx_bytes({500, 10}, iota_bytes(5000)));
  auto gz = read_raw(path("full.gz"));
  for (size_t i = 12; i < gz.size() - 8; ++i) gz[i] ^= 0x5a;
  write_raw(path("bad.gz"), gz);
  expect_data_error([&] { arceus::read_idx(path("bad.gz")); },
                    {path("bad.gz"), "truncated or corrupt gzip stream"});
}

TEST_F(IdxRead, MissingFileIsDataError) {
  expect_data_error([&] { arceus::read_idx(path("nope")); }, {path("nope"), "does not exist"});
}

TEST(IdxParse, ParsesEveryRank) {
  for (uint32_t nd = 1; nd <= 4; ++nd) {
    std::vector<uint32_t> dims(nd, 2);
    const auto data = iota_bytes(size_t(1) << nd);
    const auto arr = arceus::parse_idx(idx_bytes(dims, data), "mem");
    EXPECT_EQ(arr.dims, dims);
    EXPECT_EQ(arr.data, data);
  }
}

TEST(IdxParse, ZeroLengthArray) {
  const auto arr = arceus::parse_idx(idx_bytes({0, 28, 28}, {}), "empty");
  EXPECT_EQ(arr.dims, (std::vector<uint32_t>{0, 28, 28}));
  EXPECT_TRUE(arr.data.empty());
}

TEST(IdxParse, TruncatedDataNamesShapeAndSizes) {
  auto bytes = idx_bytes({60000, 28, 28}, iota_bytes(1234));
  expect_data_error([&] { arceus::parse_idx(bytes, "/d/train-images-idx3-ubyte"); },
                    {"/d/train-images-idx3-ubyte", "truncated",
                     "60000x28x28 = 47040000 bytes of data", "file has 1234"});
}

TEST(IdxParse, TruncatedHeader) {
  std::vector<uint8_t> bytes{0, 0, 8, 3, 0, 0, 0, 5, 0, 0};
  expect_data_error([&] { arceus::parse_idx(bytes, "short"); }, {"'short'", "truncated"});
}

TEST(IdxParse, TooShortForMagic) {
  expect_data_error([&] { arceus::parse_idx({0, 0}, "tiny"); }, {"'tiny'", "not an IDX file"});
  expect_data_error([&] { arceus::parse_idx({}, "nothing"); }, {"'nothing'", "not an IDX file"});
}

TEST(IdxParse, TrailingBytesAreAnError) {
  auto bytes = idx_bytes({2, 3}, iota_bytes(6 + 5));
  expect_data_error([&] { arceus::parse_idx(bytes, "long"); },
                    {"'long'", "5 trailing bytes", "2x3 = 6 bytes of data", "file has 11"});
}

TEST(IdxParse, WrongMagic) {
  // A PNG header, say.
  std::vector<uint8_t> bytes{0x89, 'P', 'N', 'G', 0, 0, 0, 0};
  expect_data_error([&] { arceus::parse_idx(bytes, "pic.png"); },
                    {"'pic.png' is not an IDX file", "magic 0x89504E47",
                     "expected 0x0000080N: uint8 elements, N dimensions"});
}

TEST(IdxParse, WrongTypeByte) {
  auto bytes = idx_bytes({2}, std::vector<uint8_t>(8, 0), 0x0D);  // float32
  expect_data_error([&] { arceus::parse_idx(bytes, "floats"); },
                    {"'floats'", "0x0D", "float32", "uint8 (0x08)"});
}

TEST(IdxParse, BadDimensionCount) {
  std::vector<uint8_t> zero{0, 0, 8, 0};
  expect_data_error([&] { arceus::parse_idx(zero, "z"); }, {"'z'", "0 dimensions"});
  auto five = idx_bytes({1, 1, 1, 1, 1}, {7});
  expect_data_error([&] { arceus::parse_idx(five, "f"); }, {"'f'", "5 dimensions"});
}

using IdxFind = IdxTempDir;

TEST_F(IdxFind, FindsRawAndGzipNames) {
  write_raw(path("train-images-idx3-ubyte"), {});
  write_raw(path("train-labels-idx1-ubyte.gz"), {});
  write_raw(path("t10k-images-idx3-ubyte.gz"), {});
  write_raw(path("t10k-labels-idx1-ubyte"), {});
  const auto files = arceus::find_mnist_files(dir_);
  EXPECT_EQ(files.train_images, path("train-images-idx3-ubyte"));
  EXPECT_EQ(files.train_labels, path("train-labels-idx1-ubyte.gz"));
  EXPECT_EQ(files.test_images, path("t10k-images-idx3-ubyte.gz"));
  EXPECT_EQ(files.test_labels, path("t10k-labels-idx1-ubyte"));
}

TEST_F(IdxFind, ListsEveryMissingFile) {
  expect_data_error([&] { arceus::find_mnist_files(dir_); },
                    {"MNIST files not found in '" + dir_ + "'",
                     path("train-images-idx3-ubyte") + "(.gz)",
                     path("train-labels-idx1-ubyte") + "(.gz)",
                     path("t10k-images-idx3-ubyte") + "(.gz)",
                     path("t10k-labels-idx1-ubyte") + "(.gz)"});
}

TEST_F(IdxFind, ListsOnlyTheMissingOnes) {
  write_raw(path("train-images-idx3-ubyte.gz"), {});
  write_raw(path("train-labels-idx1-ubyte"), {});
  write_raw(path("t10k-images-idx3-ubyte"), {});
  try {
    arceus::find_mnist_files(dir_);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path("t10k-labels-idx1-ubyte") + "(.gz)"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("train-images"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("t10k-images"), std::string::npos) << msg;
  }
}

TEST_F(IdxFind, MissingDirectory) {
  expect_data_error([&] { arceus::find_mnist_files(path("no-such-dir")); },
                    {"'" + path("no-such-dir") + "'", "does not exist"});
}

TEST(IdxFashionMnist, RealTestLabels) {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(root)) {
    GTEST_SKIP() << root << " not present (Debian package dataset-fashion-mnist not installed)";
  }
  const auto files = arceus::find_mnist_files(root);
  const auto labels = arceus::read_idx(files.test_labels);
  ASSERT_EQ(labels.dims, (std::vector<uint32_t>{10000}));
  ASSERT_EQ(labels.data.size(), 10000u);
  std::vector<int> counts(10, 0);
  for (uint8_t l : labels.data) {
    ASSERT_LT(l, 10);
    ++counts[l];
  }
  for (int c : counts) EXPECT_EQ(c, 1000);  // Fashion-MNIST's test split is balanced
}
