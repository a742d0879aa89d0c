// storage/: checkpoint.h5 (round trip, documented layout, atomic replace, errors, inspect
// output) and metrics.h5 (append, resume, columns). Torch-free, MPI-free; the layout checks
// open the files with the HDF5 C API.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <random>
#include <sstream>

#include "storage/storage.h"
#include "support/errors.h"
#include "support/files.h"

namespace fs = std::filesystem;
using namespace arceus;

namespace {

// A fresh directory per test, removed afterwards.
class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("arceus_storage_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::vector<float> iota_values(size_t n, float start, float step) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + step * static_cast<float>(i);
  return v;
}

CheckpointData sample_checkpoint(float offset = 0.0f) {
  CheckpointData d;
  d.config_yaml =
      "model:\n  name: mlp\n  hidden: [128, 64]\ndata:\n  path: \"données/mnist ✓\"\n# comment: 训练\n";
  d.epoch = 3;
  d.step = 17;
  d.global_step = 0xFFFFFFFFFFull + 5;  // needs more than 32 bits
  d.attributes = {{"optimizer", "sgd"}, {"world_size", "4"}, {"written_at", "2024-05-01T12:00:00Z"},
                  {"note", "line one\nline two — ünïcode"}};
  // Not in name order on purpose: the order written is the order read.
  d.parameters.push_back({"layers.0.weight", {4, 3}, iota_values(12, 0.5f + offset, 0.25f)});
  d.parameters.push_back({"layers.0.bias", {4}, iota_values(4, -1.0f, 0.5f)});
  d.parameters.push_back({"layers.10.weight", {2, 3, 2}, iota_values(12, 3.0f, -0.125f)});
  d.parameters.push_back({"layers.2.scale", {}, {2.5f}});
  d.parameters.push_back({"empty", {0, 5}, {}});
  d.optimizer.push_back({"layers.0.weight:momentum_buffer", {4, 3}, iota_values(12, 0.01f, 0.01f)});
  d.optimizer.push_back({"layers.0.bias:momentum_buffer", {4}, iota_values(4, 0.1f, -0.1f)});
  d.optimizer.push_back({"layers.2.scale:step", {}, {42.0f}});
  std::vector<uint8_t> bytes(300);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>((i * 37 + 11) & 0xFF);
  bytes[0] = 0;
  bytes[1] = 255;
  d.rng.push_back({"stage0", bytes});
  d.rng.push_back({"stage1", {1, 2, 3}});
  d.rng.push_back({"orchestrator", {}});
  return d;
}

void expect_same_arrays(const std::vector<NamedArray>& got, const std::vector<NamedArray>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].name, want[i].name) << i;
    EXPECT_EQ(got[i].shape, want[i].shape) << want[i].name;
    EXPECT_EQ(got[i].data, want[i].data) << want[i].name;  // bit-exact: float32 on disk
  }
}

void expect_same_checkpoint(const CheckpointData& got, const CheckpointData& want) {
  EXPECT_EQ(got.config_yaml, want.config_yaml);
  EXPECT_EQ(got.epoch, want.epoch);
  EXPECT_EQ(got.step, want.step);
  EXPECT_EQ(got.global_step, want.global_step);
  EXPECT_EQ(got.attributes, want.attributes);
  expect_same_arrays(got.parameters, want.parameters);
  expect_same_arrays(got.optimizer, want.optimizer);
  ASSERT_EQ(got.rng.size(), want.rng.size());
  for (size_t i = 0; i < want.rng.size(); ++i) {
    EXPECT_EQ(got.rng[i].name, want.rng[i].name);
    EXPECT_EQ(got.rng[i].bytes, want.rng[i].bytes) << want.rng[i].name;
  }
}

// The StorageError message of `f()` ("" if it did not throw one).
template <class F>
std::string error_of(F&& f) {
  return test::error_message<StorageError>(f);
}

using test::read_text;   // the whole file
using test::write_text;  // created or truncated

// HDF5 calls made by the tests themselves print nothing either.
struct QuietHdf5 {
  QuietHdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};
const QuietHdf5 quiet_hdf5;

void add_string_attr(hid_t loc, const char* name, const std::string& value, bool variable) {
  hid_t type = H5Tcopy(H5T_C_S1);
  if (variable) {
    H5Tset_size(type, H5T_VARIABLE);
  } else {
    H5Tset_size(type, value.size() + 8);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
  }
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(attr, 0);
  if (variable) {
    const char* p = value.c_str();
    ASSERT_GE(H5Awrite(attr, type, &p), 0);
  } else {
    std::vector<char> buf(value.size() + 8, '\0');
    std::copy(value.begin(), value.end(), buf.begin());
    ASSERT_GE(H5Awrite(attr, type, buf.data()), 0);
  }
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

void add_int_attr(hid_t loc, const char* name, int64_t value) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(attr, 0);
  ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT64, &value), 0);
  H5Aclose(attr);
  H5Sclose(space);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Checkpoints

using StorageCheckpoint = StorageTest;

TEST_F(StorageCheckpoint, RoundTripKeepsEverything) {
  const CheckpointData want = sample_checkpoint();
  const std::string p = path("checkpoint.h5");
  write_checkpoint(p, want);
  EXPECT_TRUE(fs::exists(p));
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  expect_same_checkpoint(read_checkpoint(p), want);
}

TEST_F(StorageCheckpoint, RoundTripOfAnEmptyCheckpoint) {
  CheckpointData want;  // no tensors, no config, zeros
  const std::string p = path("empty.h5");
  write_checkpoint(p, want);
  expect_same_checkpoint(read_checkpoint(p), want);
}

TEST_F(StorageCheckpoint, RoundTripOfExtremeValues) {
  CheckpointData want;
  want.epoch = -1;
  want.step = INT64_MAX;
  want.global_step = UINT64_MAX;
  want.parameters.push_back({"x", {6},
                             {0.0f, -0.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::min(),
                              std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min()}});
  const std::string p = path("extreme.h5");
  write_checkpoint(p, want);
  const CheckpointData got = read_checkpoint(p);
  EXPECT_EQ(got.epoch, -1);
  EXPECT_EQ(got.step, INT64_MAX);
  EXPECT_EQ(got.global_step, UINT64_MAX);
  expect_same_arrays(got.parameters, want.parameters);
  EXPECT_TRUE(std::signbit(got.parameters[0].data[1]));
}

TEST_F(StorageCheckpoint, CreatesParentDirectories) {
  const std::string p = path("a/b/c/checkpoint.h5");
  write_checkpoint(p, sample_checkpoint());
  EXPECT_EQ(read_checkpoint(p).epoch, 3);
}

TEST_F(StorageCheckpoint, FileHasTheDocumentedLayout) {
  const std::string p = path("checkpoint.h5");
  write_checkpoint(p, sample_checkpoint());

  hid_t file = H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);

  // /parameters/layers.0.weight: float32 little-endian, dims [4, 3].
  ASSERT_GT(H5Lexists(file, "/parameters", H5P_DEFAULT), 0);
  ASSERT_GT(H5Lexists(file, "/parameters/layers.0.weight", H5P_DEFAULT), 0);
  hid_t dset = H5Dopen2(file, "/parameters/layers.0.weight", H5P_DEFAULT);
  ASSERT_GE(dset, 0);
  hid_t type = H5Dget_type(dset);
  EXPECT_GT(H5Tequal(type, H5T_IEEE_F32LE), 0);
  H5Tclose(type);
  hid_t space = H5Dget_space(dset);
  ASSERT_EQ(H5Sget_simple_extent_ndims(space), 2);
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(space, dims, nullptr);
  EXPECT_EQ(dims[0], 4u);
  EXPECT_EQ(dims[1], 3u);
  H5Sclose(space);
  float values[12];
  ASSERT_GE(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
  EXPECT_EQ(values[0], 0.5f);
  EXPECT_EQ(values[11], 0.5f + 11 * 0.25f);
  H5Dclose(dset);

  // A 0-d tensor is a scalar dataspace.
  dset = H5Dopen2(file, "/parameters/layers.2.scale", H5P_DEFAULT);
  ASSERT_GE(dset, 0);
  space = H5Dget_space(dset);
  EXPECT_EQ(H5Sget_simple_extent_type(space), H5S_SCALAR);
  H5Sclose(space);
  H5Dclose(dset);

  // Optimizer state under its "<parameter>:<state>" name, RNG state as uint8.
  EXPECT_GT(H5Lexists(file, "/optimizer/layers.0.weight:momentum_buffer", H5P_DEFAULT), 0);
  dset = H5Dopen2(file, "/rng/stage0", H5P_DEFAULT);
  ASSERT_GE(dset, 0);
  type = H5Dget_type(dset);
  EXPECT_GT(H5Tequal(type, H5T_STD_U8LE), 0);
  H5Tclose(type);
  space = H5Dget_space(dset);
  EXPECT_EQ(H5Sget_simple_extent_npoints(space), 300);
  H5Sclose(space);
  H5Dclose(dset);

  // Root attributes: format (string), version (1), epoch/step int64, global_step uint64, extras.
  hid_t attr = H5Aopen(file, "format", H5P_DEFAULT);
  ASSERT_GE(attr, 0);
  type = H5Aget_type(attr);
  EXPECT_EQ(H5Tget_class(type), H5T_STRING);
  EXPECT_EQ(H5Tis_variable_str(type), 0) << "fixed-length: the bytes under the attribute's checksum";
  EXPECT_EQ(H5Tget_cset(type), H5T_CSET_UTF8);
  EXPECT_EQ(H5Tget_strpad(type), H5T_STR_NULLPAD);
  std::string text(H5Tget_size(type), '?');
  ASSERT_GE(H5Aread(attr, type, text.data()), 0);
  EXPECT_EQ(text, "arceus-checkpoint");
  H5Tclose(type);
  H5Aclose(attr);

  auto int_attr = [&](const char* name, hid_t want_type) {
    hid_t a = H5Aopen(file, name, H5P_DEFAULT);
    EXPECT_GE(a, 0) << name;
    hid_t t = H5Aget_type(a);
    EXPECT_GT(H5Tequal(t, want_type), 0) << name;
    int64_t v = -99;
    H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Tclose(t);
    H5Aclose(a);
    return v;
  };
  EXPECT_EQ(int_attr("version", H5T_STD_I64LE), 1);
  EXPECT_EQ(int_attr("epoch", H5T_STD_I64LE), 3);
  EXPECT_EQ(int_attr("step", H5T_STD_I64LE), 17);
  int_attr("global_step", H5T_STD_U64LE);
  for (const char* name : {"config", "optimizer", "world_size", "written_at", "note"}) {
    EXPECT_GT(H5Aexists(file, name), 0) << name;
  }
  EXPECT_GE(H5Fclose(file), 0);
}

TEST_F(StorageCheckpoint, StaleTempFileFromAnInterruptedWriteIsIgnoredAndReplaced) {
  const std::string p = path("checkpoint.h5");
  const CheckpointData a = sample_checkpoint(0.0f);
  write_checkpoint(p, a);

  // An interrupted write left half an HDF5 file behind.
  const std::string whole = read_text(p);
  write_text(p + ".tmp", whole.substr(0, whole.size() / 3));
  expect_same_checkpoint(read_checkpoint(p), a);

  CheckpointData b = sample_checkpoint(100.0f);
  b.epoch = 4;
  write_checkpoint(p, b);
  expect_same_checkpoint(read_checkpoint(p), b);
  EXPECT_FALSE(fs::exists(p + ".tmp"));

  // Garbage instead of HDF5 in the temporary file: same.
  write_text(p + ".tmp", "garbage, not HDF5");
  expect_same_checkpoint(read_checkpoint(p), b);
  write_checkpoint(p, a);
  expect_same_checkpoint(read_checkpoint(p), a);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(StorageCheckpoint, CrashBetweenTempFileAndRenameKeepsThePreviousCheckpoint) {
  const std::string p = path("checkpoint.h5");
  const CheckpointData a = sample_checkpoint(0.0f);
  write_checkpoint(p, a);

  CheckpointData b = sample_checkpoint(7.0f);
  b.epoch = 9;
  write_checkpoint_file(p + ".tmp", b);  // complete temp file, then the "crash": no rename
  expect_same_checkpoint(read_checkpoint(p), a);
  expect_same_checkpoint(read_checkpoint(p + ".tmp"), b);

  CheckpointData c = sample_checkpoint(-3.0f);
  c.epoch = 10;
  write_checkpoint(p, c);
  expect_same_checkpoint(read_checkpoint(p), c);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(StorageCheckpoint, FailedWriteLeavesThePreviousCheckpointAndNoTempFile) {
  const std::string p = path("checkpoint.h5");
  const CheckpointData a = sample_checkpoint();
  write_checkpoint(p, a);

  CheckpointData bad = sample_checkpoint();
  bad.parameters[1].data.pop_back();  // shape [4] with 3 values
  const std::string msg = error_of([&] { write_checkpoint(p, bad); });
  EXPECT_NE(msg.find("/parameters/layers.0.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  expect_same_checkpoint(read_checkpoint(p), a);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(StorageCheckpoint, InvalidNamesAreRejected) {
  const std::string p = path("checkpoint.h5");
  auto with_param = [](const std::string& name) {
    CheckpointData d;
    d.parameters.push_back({name, {1}, {1.0f}});
    return d;
  };
  EXPECT_NE(error_of([&] { write_checkpoint(p, with_param("a/b")); }).find("contains '/'"), std::string::npos);
  EXPECT_NE(error_of([&] { write_checkpoint(p, with_param("")); }).find("empty name"), std::string::npos);
  CheckpointData dup = with_param("w");
  dup.parameters.push_back({"w", {1}, {2.0f}});
  EXPECT_NE(error_of([&] { write_checkpoint(p, dup); }).find("duplicate name '/parameters/w'"), std::string::npos);
  CheckpointData reserved;
  reserved.attributes["epoch"] = "5";
  EXPECT_NE(error_of([&] { write_checkpoint(p, reserved); }).find("'epoch' is reserved"), std::string::npos);
  CheckpointData negative = with_param("w");
  negative.parameters[0].shape = {-1};
  EXPECT_NE(error_of([&] { write_checkpoint(p, negative); }).find("negative dimension"), std::string::npos);
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(StorageCheckpoint, MissingFile) {
  const std::string p = path("nope/checkpoint.h5");
  EXPECT_EQ(error_of([&] { read_checkpoint(p); }), "[checkpoint] '" + p + "' does not exist");
}

TEST_F(StorageCheckpoint, CorruptFile) {
  const std::string p = path("random.h5");
  std::mt19937 gen(1234);
  std::string bytes(4096, '\0');
  for (char& c : bytes) c = static_cast<char>(gen() & 0xFF);
  write_text(p, bytes);
  const std::string msg = error_of([&] { read_checkpoint(p); });
  EXPECT_EQ(msg.rfind("[checkpoint] '" + p + "' is not a readable HDF5 file (truncated or corrupt?)", 0), 0u) << msg;

  write_text(p, "");  // empty
  const std::string empty = error_of([&] { read_checkpoint(p); });
  EXPECT_NE(empty.find("is not a readable HDF5 file (truncated or corrupt?)"), std::string::npos) << empty;
}

TEST_F(StorageCheckpoint, TruncatedFile) {
  const std::string p = path("checkpoint.h5");
  CheckpointData d = sample_checkpoint();
  d.parameters.push_back({"big", {100, 100}, iota_values(10000, 0.0f, 1e-3f)});
  write_checkpoint(p, d);
  const std::string whole = read_text(p);
  ASSERT_GT(whole.size(), 40000u);
  for (size_t keep : {whole.size() / 2, whole.size() - 1, size_t{100}}) {
    write_text(p, whole.substr(0, keep));
    const std::string msg = error_of([&] { read_checkpoint(p); });
    EXPECT_EQ(msg.rfind("[checkpoint] '" + p + "' is not a readable HDF5 file (truncated or corrupt?)", 0), 0u)
        << keep << ": " << msg;
  }
}

// HDF5's latest file format, the one with metadata checksums that checkpoints are written in.
hid_t create_latest_format(const std::string& p) {
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  const hid_t file = H5Fcreate(p.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  return file;
}

TEST_F(StorageCheckpoint, OlderFormatWithoutMetadataChecksumsIsRefused) {
  const std::string p = path("old.h5");
  ASSERT_GE(H5Fclose(H5Fcreate(p.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)), 0);  // superblock 0
  EXPECT_EQ(error_of([&] { read_checkpoint(p); }),
            "[checkpoint] '" + p + "' is an HDF5 file of superblock version 0, without metadata checksums: arceus "
            "reads checkpoints in the format it writes (superblock version 3; written by an older arceus, or by "
            "another tool?)");
  write_checkpoint(p, sample_checkpoint());
  EXPECT_EQ(read_text(p)[8], '\x03') << "the superblock version written";
}

TEST_F(StorageCheckpoint, VariableLengthAttributesAreRefused) {
  const std::string p = path("checkpoint.h5");
  write_checkpoint(p, sample_checkpoint());
  hid_t file = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  add_string_attr(file, "h5py_str", "from h5py", true);
  H5Fclose(file);
  EXPECT_EQ(error_of([&] { read_checkpoint(p); }),
            "[checkpoint] '" + p + "': attribute 'h5py_str' of / has a variable-length type: arceus writes a checkpoint's "
            "attributes with fixed lengths (written by an older arceus, or by another tool?)");
}

TEST_F(StorageCheckpoint, HdfFileWithoutFormatAttribute) {
  const std::string p = path("other.h5");
  hid_t file = create_latest_format(p);
  ASSERT_GE(file, 0);
  hid_t g = H5Gcreate2(file, "parameters", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(g);
  H5Fclose(file);
  EXPECT_EQ(error_of([&] { read_checkpoint(p); }),
            "[checkpoint] '" + p + "' is not an arceus checkpoint (no format attribute)");

  // Another format value.
  file = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  add_string_attr(file, "format", "keras-weights", false);
  H5Fclose(file);
  const std::string msg = error_of([&] { read_checkpoint(p); });
  EXPECT_EQ(msg.rfind("[checkpoint] '" + p + "' is not an arceus checkpoint", 0), 0u) << msg;
  EXPECT_NE(msg.find("keras-weights"), std::string::npos) << msg;
}

TEST_F(StorageCheckpoint, VersionMismatchNamesBothVersions) {
  const std::string p = path("checkpoint.h5");
  write_checkpoint(p, sample_checkpoint());
  hid_t file = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  ASSERT_GE(H5Adelete(file, "version"), 0);
  add_int_attr(file, "version", 2);
  H5Fclose(file);
  const std::string msg = error_of([&] { read_checkpoint(p); });
  EXPECT_NE(msg.find("[checkpoint] '" + p + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("version 2, expected 1"), std::string::npos) << msg;
}

TEST_F(StorageCheckpoint, DatasetOfTheWrongTypeIsNamed) {
  const std::string p = path("checkpoint.h5");
  write_checkpoint(p, sample_checkpoint());
  hid_t file = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  hsize_t n = 3;
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t dset = H5Dcreate2(file, "/parameters/bad.weight", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(dset, 0);
  const int32_t values[3] = {1, 2, 3};
  H5Dwrite(dset, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
  H5Dclose(dset);
  H5Sclose(space);
  H5Fclose(file);
  const std::string msg = error_of([&] { read_checkpoint(p); });
  EXPECT_NE(msg.find("/parameters/bad.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected float32"), std::string::npos) << msg;
}

// A float32 dataset of `dims` that has no data: HDF5 allocates no storage, reads give the fill value.
void add_unwritten_dataset(const std::string& p, const char* name, std::vector<hsize_t> dims) {
  const hid_t file = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  EXPECT_GE(H5Dclose(H5Dcreate2(file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)), 0);
  H5Sclose(space);
  EXPECT_GE(H5Fclose(file), 0);
}

TEST_F(StorageCheckpoint, ValuesAboveTheLimitAreRefusedBeforeAllocating) {
  // 3 x max_parameters (1,000,000,000 by default) values in all: the file is a few KiB.
  const std::string p = path("checkpoint.h5");
  write_checkpoint(p, sample_checkpoint());
  add_unwritten_dataset(p, "/optimizer/huge", {3000000, 1001});
  const std::string msg = error_of([&] { read_checkpoint(p); });
  EXPECT_NE(msg.find("dataset /optimizer/huge holds [3000000, 1001] = 3,003,000,000 values (after "), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("above the limit of a checkpoint, 3 x max_parameters = 3,000,000,000 values (max_parameters = "
                     "1,000,000,000); raise it with ARCEUS_LIMIT_MAX_PARAMETERS in arceus's environment"),
            std::string::npos)
      << msg;
}

TEST_F(StorageCheckpoint, CorruptedDataInsideAValidFileIsNamed) {
  // The file opens, but bytes inside a dataset's raw data were damaged: the checksum
  // (Fletcher-32) makes the read fail, and the message names the dataset.
  const std::string p = path("checkpoint.h5");
  CheckpointData d = sample_checkpoint();
  std::vector<uint8_t> pattern(65536);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>((i * 7 + i / 251) % 251);
  d.rng.push_back({"big", pattern});
  d.parameters.push_back({"big.weight", {64, 64}, iota_values(4096, 1.0f, 1.0f)});
  write_checkpoint(p, d);
  const std::string clean = read_text(p);

  auto corrupt_at = [&](const std::string& needle, const char* what) {
    const size_t pos = clean.find(needle);
    ASSERT_NE(pos, std::string::npos) << what;
    std::string bytes = clean;
    bytes[pos + needle.size() / 2] ^= 0x5A;
    write_text(p, bytes);
    const std::string msg = error_of([&] { read_checkpoint(p); });
    EXPECT_EQ(msg.rfind("[checkpoint] '" + p + "': ", 0), 0u) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    EXPECT_NE(msg.find("H5Dread"), std::string::npos) << msg;
  };
  corrupt_at(std::string(reinterpret_cast<const char*>(pattern.data()) + 30000, 64), "/rng/big");
  const std::vector<float> floats = iota_values(4096, 1.0f, 1.0f);
  corrupt_at(std::string(reinterpret_cast<const char*>(floats.data()) + 2000 * 4, 64), "/parameters/big.weight");

  write_text(p, clean);
  expect_same_checkpoint(read_checkpoint(p), d);
}

TEST_F(StorageCheckpoint, LargeTensorsSpanSeveralChunks) {
  // 3 MiB and 1.5 MiB tensors: several ~1 MiB chunks each, read back exactly.
  const std::string p = path("checkpoint.h5");
  CheckpointData d;
  d.parameters.push_back({"embed", {768, 1024}, iota_values(768 * 1024, -1.0f, 1e-6f)});
  d.parameters.push_back({"flat", {393216}, iota_values(393216, 5.0f, -1e-5f)});
  write_checkpoint(p, d);
  expect_same_checkpoint(read_checkpoint(p), d);
}

TEST_F(StorageCheckpoint, FixedLengthStringAttributesAreRead) {
  const std::string p = path("checkpoint.h5");
  write_checkpoint(p, sample_checkpoint());
  hid_t file = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  ASSERT_GE(H5Adelete(file, "config"), 0);
  add_string_attr(file, "config", "fixed: length\n", false);
  add_string_attr(file, "extra", "from another tool", false);
  add_int_attr(file, "seed", -42);
  H5Fclose(file);
  const CheckpointData got = read_checkpoint(p);
  EXPECT_EQ(got.config_yaml, "fixed: length\n");
  EXPECT_EQ(got.attributes.at("extra"), "from another tool");
  EXPECT_EQ(got.attributes.at("seed"), "-42");
  EXPECT_EQ(got.attributes.at("optimizer"), "sgd");
}

TEST_F(StorageCheckpoint, ErrorsPrintNothingOnStderr) {
  const std::string p = path("random.h5");
  write_text(p, std::string(2048, 'x'));
  ::testing::internal::CaptureStderr();
  EXPECT_THROW(read_checkpoint(p), StorageError);
  EXPECT_THROW(read_checkpoint(path("missing.h5")), StorageError);
  EXPECT_THROW(read_metrics_column(p, "steps", "loss"), StorageError);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

TEST_F(StorageCheckpoint, NoHdf5HandleOutlivesACall) {
  // Successes and failures (thrown mid-way) alike close every id they opened.
  const std::string p = path("checkpoint.h5");
  write_checkpoint(p, sample_checkpoint());
  read_checkpoint(p);
  CheckpointData bad = sample_checkpoint();
  bad.optimizer[0].data.push_back(1.0f);
  EXPECT_THROW(write_checkpoint(p, bad), StorageError);
  hid_t file = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(H5Adelete(file, "version"), 0);
  add_int_attr(file, "version", 7);
  H5Fclose(file);
  EXPECT_THROW(read_checkpoint(p), StorageError);
  {
    MetricsFile m(path("metrics.h5"), false);
    m.append(StepRow{});
    m.flush();
    EXPECT_THROW(read_metrics_column(path("metrics.h5"), "steps", "nope"), StorageError);
  }
  EXPECT_THROW(MetricsFile(p, true), StorageError);
  EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

// ---------------------------------------------------------------------------------------------
// `arceus inspect`

using StoragePrint = StorageTest;

TEST_F(StoragePrint, ShowsConfigCountersNamesShapesAndNorms) {
  CheckpointData d;
  d.config_yaml = "model:\n  name: mlp\n";
  d.epoch = 2;
  d.step = 5;
  d.global_step = 1234;
  d.attributes["optimizer"] = "adam";
  d.parameters.push_back({"layers.0.weight", {2, 2}, {1.0f, 2.0f, 2.0f, 4.0f}});  // sqrt(1+4+4+16) = 5
  d.parameters.push_back({"layers.0.bias", {3}, {1.0f, 1.0f, 1.0f}});             // sqrt(3) = 1.73205
  d.parameters.push_back({"scale", {}, {-0.5f}});                                  // 0.5
  d.optimizer.push_back({"layers.0.weight:exp_avg", {2, 2}, {3.0f, 0.0f, 0.0f, -4.0f}});  // 5
  d.rng.push_back({"stage0", std::vector<uint8_t>(16, 7)});
  std::ostringstream out;
  print_checkpoint(d, out);
  const std::string s = out.str();

  EXPECT_EQ(s.rfind("config:\n  model:\n    name: mlp\n", 0), 0u) << s;
  EXPECT_NE(s.find("epoch: 2  step: 5  global_step: 1234\n"), std::string::npos) << s;
  EXPECT_NE(s.find("optimizer: adam"), std::string::npos) << s;
  EXPECT_NE(s.find("\nparameters:\n"), std::string::npos) << s;
  EXPECT_NE(s.find("\noptimizer state:\n"), std::string::npos) << s;
  EXPECT_LT(s.find("\nparameters:\n"), s.find("\noptimizer state:\n"));
  // Names padded to the longest, shapes padded to the widest.
  EXPECT_NE(s.find("  layers.0.weight  [2, 2]  norm 5\n"), std::string::npos) << s;
  EXPECT_NE(s.find("  layers.0.bias    [3]     norm 1.73205\n"), std::string::npos) << s;
  EXPECT_NE(s.find("  scale            []      norm 0.5\n"), std::string::npos) << s;
  EXPECT_NE(s.find("  layers.0.weight:exp_avg  [2, 2]  norm 5\n"), std::string::npos) << s;
  EXPECT_NE(s.find("stage0  16 bytes"), std::string::npos) << s;
}

TEST_F(StoragePrint, NormIsComputedInDouble) {
  // 10^6 values of 1e-3: float accumulation drifts, double gives sqrt(1e6 * 1e-6) = 1.
  CheckpointData d;
  d.parameters.push_back({"w", {1000, 1000}, std::vector<float>(1000000, 1e-3f)});
  std::ostringstream out;
  print_checkpoint(d, out);
  double sum = 0;
  for (int i = 0; i < 1000000; ++i) sum += static_cast<double>(1e-3f) * static_cast<double>(1e-3f);
  std::ostringstream want;
  want << std::setprecision(6) << std::sqrt(sum);
  EXPECT_EQ(want.str(), "1");
  EXPECT_NE(out.str().find("w  [1000, 1000]  norm 1\n"), std::string::npos) << out.str();
}

TEST_F(StoragePrint, RoundTrippedCheckpointPrints) {
  const std::string p = path("checkpoint.h5");
  write_checkpoint(p, sample_checkpoint());
  std::ostringstream out;
  print_checkpoint(read_checkpoint(p), out);
  const std::string s = out.str();
  EXPECT_NE(s.find("path: \"données/mnist ✓\""), std::string::npos) << s;
  EXPECT_NE(s.find("layers.10.weight"), std::string::npos) << s;
  EXPECT_NE(s.find("[2, 3, 2]"), std::string::npos) << s;
  EXPECT_NE(s.find("[0, 5]"), std::string::npos) << s;
  // Model order is kept: layers.0.weight, layers.0.bias, layers.10.weight, layers.2.scale.
  EXPECT_LT(s.find("layers.0.bias"), s.find("layers.10.weight"));
  EXPECT_LT(s.find("layers.10.weight"), s.find("layers.2.scale"));
}

// ---------------------------------------------------------------------------------------------
// Metrics

using StorageMetrics = StorageTest;

namespace {

StepRow step_row(int64_t i) {
  StepRow r;
  r.epoch = 1 + i / 100;
  r.step = 1 + i % 100;
  r.loss = 2.0 / (1.0 + static_cast<double>(i));
  r.accuracy = 0.001 * static_cast<double>(i % 1000);
  r.samples_per_second = 1000.0 + static_cast<double>(i);
  r.bytes_raw = 1e6 * static_cast<double>(i);
  r.bytes_wire = 0.25e6 * static_cast<double>(i);
  return r;
}

EpochRow epoch_row(int64_t i) {
  EpochRow r;
  r.epoch = i + 1;
  r.train_loss = 1.0 / static_cast<double>(i + 1);
  r.train_accuracy = 0.9 + 0.01 * static_cast<double>(i);
  r.val_loss = 1.5 / static_cast<double>(i + 1);
  r.val_accuracy = 0.85 + 0.01 * static_cast<double>(i);
  r.seconds = 12.5 + static_cast<double>(i);
  r.samples_per_second = 4800.0 + static_cast<double>(i);
  r.bytes_raw = 3e9 + static_cast<double>(i);
  r.bytes_wire = 1e9 + static_cast<double>(i);
  return r;
}

RankRow rank_row(int64_t i) {
  RankRow r;
  r.epoch = 1 + i / 4;
  r.rank = i % 4;
  r.stage = r.rank - 1;  // rank 0 = orchestrator = stage -1
  r.forward = 0.5 * static_cast<double>(i);
  r.backward = 1.0 * static_cast<double>(i);
  r.optimizer = 0.1 * static_cast<double>(i);
  r.codec = 0.01 * static_cast<double>(i);
  r.comm_wait = 0.2 * static_cast<double>(i);
  r.idle = 0.3 * static_cast<double>(i);
  r.wall = 10.0 + static_cast<double>(i);
  r.cpu = 9.0 + static_cast<double>(i);
  r.gflops = 123.456 * static_cast<double>(i);
  return r;
}

template <class Row>
std::vector<double> expected_column(int64_t n, Row (*make)(int64_t), double (*field)(const Row&)) {
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(field(make(i)));
  return v;
}

void expect_tables(const std::string& p, int64_t steps, int64_t epochs, int64_t ranks) {
#define COL(table, make, Row, f) \
  EXPECT_EQ(read_metrics_column(p, table, #f), expected_column<Row>(n, make, [](const Row& r) { return static_cast<double>(r.f); })) << table << "/" #f
  {
    const int64_t n = steps;
    COL("steps", step_row, StepRow, epoch);
    COL("steps", step_row, StepRow, step);
    COL("steps", step_row, StepRow, loss);
    COL("steps", step_row, StepRow, accuracy);
    COL("steps", step_row, StepRow, samples_per_second);
    COL("steps", step_row, StepRow, bytes_raw);
    COL("steps", step_row, StepRow, bytes_wire);
  }
  {
    const int64_t n = epochs;
    COL("epochs", epoch_row, EpochRow, epoch);
    COL("epochs", epoch_row, EpochRow, train_loss);
    COL("epochs", epoch_row, EpochRow, train_accuracy);
    COL("epochs", epoch_row, EpochRow, val_loss);
    COL("epochs", epoch_row, EpochRow, val_accuracy);
    COL("epochs", epoch_row, EpochRow, seconds);
    COL("epochs", epoch_row, EpochRow, samples_per_second);
    COL("epochs", epoch_row, EpochRow, bytes_raw);
    COL("epochs", epoch_row, EpochRow, bytes_wire);
  }
  {
    const int64_t n = ranks;
    COL("ranks", rank_row, RankRow, epoch);
    COL("ranks", rank_row, RankRow, rank);
    COL("ranks", rank_row, RankRow, stage);
    COL("ranks", rank_row, RankRow, forward);
    COL("ranks", rank_row, RankRow, backward);
    COL("ranks", rank_row, RankRow, optimizer);
    COL("ranks", rank_row, RankRow, codec);
    COL("ranks", rank_row, RankRow, comm_wait);
    COL("ranks", rank_row, RankRow, idle);
    COL("ranks", rank_row, RankRow, wall);
    COL("ranks", rank_row, RankRow, cpu);
    COL("ranks", rank_row, RankRow, gflops);
  }
#undef COL
}

std::vector<std::string> members(hid_t file, const char* group) {
  std::vector<std::string> names;
  hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
  H5G_info_t info;
  H5Gget_info(g, &info);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char buf[256];
    H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, buf, sizeof buf, H5P_DEFAULT);
    names.emplace_back(buf);
  }
  H5Gclose(g);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_F(StorageMetrics, AppendFlushReopenAppendRead) {
  const std::string p = path("run/metrics.h5");
  {
    MetricsFile m(p, false);
    for (int64_t i = 0; i < 3; ++i) m.append(step_row(i));
    for (int64_t i = 0; i < 2; ++i) m.append(epoch_row(i));
    for (int64_t i = 0; i < 4; ++i) m.append(rank_row(i));
    EXPECT_EQ(m.rows("steps"), 3);
    EXPECT_EQ(m.rows("epochs"), 2);
    EXPECT_EQ(m.rows("ranks"), 4);
    m.flush();
    EXPECT_EQ(m.rows("steps"), 3);
    // Flushed rows are on disk while the file is still open.
    EXPECT_EQ(read_metrics_column(p, "steps", "loss").size(), 3u);
  }
  expect_tables(p, 3, 2, 4);
  {
    MetricsFile m(p, true);  // resume
    EXPECT_EQ(m.rows("steps"), 3);
    EXPECT_EQ(m.rows("epochs"), 2);
    EXPECT_EQ(m.rows("ranks"), 4);
    for (int64_t i = 3; i < 10; ++i) m.append(step_row(i));
    m.append(epoch_row(2));
    for (int64_t i = 4; i < 8; ++i) m.append(rank_row(i));
    m.flush();
    EXPECT_EQ(m.rows("steps"), 10);
    EXPECT_EQ(m.rows("epochs"), 3);
    EXPECT_EQ(m.rows("ranks"), 8);
  }
  expect_tables(p, 10, 3, 8);
}

TEST_F(StorageMetrics, DestructorWritesBufferedRows) {
  const std::string p = path("metrics.h5");
  {
    MetricsFile m(p, false);
    for (int64_t i = 0; i < 5; ++i) m.append(step_row(i));
    m.append(epoch_row(0));
  }
  expect_tables(p, 5, 1, 0);
}

TEST_F(StorageMetrics, AppendCreatesAMissingFileAndCreateTruncates) {
  const std::string p = path("metrics.h5");
  {
    MetricsFile m(p, true);
    EXPECT_EQ(m.rows("steps"), 0);
    m.append(step_row(0));
  }
  {
    MetricsFile m(p, false);  // a new run: starts empty
    EXPECT_EQ(m.rows("steps"), 0);
  }
  expect_tables(p, 0, 0, 0);
}

TEST_F(StorageMetrics, ManyRowsAreFast) {
  const std::string p = path("metrics.h5");
  const auto t0 = std::chrono::steady_clock::now();
  {
    MetricsFile m(p, false);
    for (int64_t i = 0; i < 5000; ++i) {
      m.append(step_row(i));
      if (i % 1000 == 999) m.flush();
    }
    for (int64_t i = 0; i < 50; ++i) m.append(epoch_row(i));
    for (int64_t i = 0; i < 200; ++i) m.append(rank_row(i));
    EXPECT_EQ(m.rows("steps"), 5000);
  }
  {
    MetricsFile m(p, true);
    EXPECT_EQ(m.rows("steps"), 5000);
    for (int64_t i = 5000; i < 7500; ++i) m.append(step_row(i));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 2.0);
  expect_tables(p, 7500, 50, 200);
}

TEST_F(StorageMetrics, FileHasTheDocumentedLayout) {
  const std::string p = path("metrics.h5");
  {
    MetricsFile m(p, false);
    m.append(step_row(0));
    m.append(rank_row(0));
  }
  hid_t file = H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  using V = std::vector<std::string>;
  auto sorted = [](V v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(members(file, "/"), sorted({"epochs", "ranks", "steps"}));
  EXPECT_EQ(members(file, "/steps"),
            sorted({"epoch", "step", "loss", "accuracy", "samples_per_second", "bytes_raw", "bytes_wire"}));
  EXPECT_EQ(members(file, "/epochs"), sorted({"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                              "seconds", "samples_per_second", "bytes_raw", "bytes_wire"}));
  EXPECT_EQ(members(file, "/ranks"), sorted({"epoch", "rank", "stage", "forward", "backward", "optimizer", "codec",
                                             "comm_wait", "idle", "wall", "cpu", "gflops", "replica", "sync"}));

  for (const auto& [name, want_type] :
       std::vector<std::pair<std::string, hid_t>>{{"/steps/epoch", H5T_STD_I64LE},
                                                  {"/steps/loss", H5T_IEEE_F64LE},
                                                  {"/ranks/stage", H5T_STD_I64LE},
                                                  {"/ranks/gflops", H5T_IEEE_F64LE}}) {
    hid_t dset = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
    ASSERT_GE(dset, 0) << name;
    hid_t type = H5Dget_type(dset);
    EXPECT_GT(H5Tequal(type, want_type), 0) << name;
    H5Tclose(type);
    hid_t space = H5Dget_space(dset);
    hsize_t dim = 0, maxdim = 0;
    ASSERT_EQ(H5Sget_simple_extent_ndims(space), 1) << name;
    H5Sget_simple_extent_dims(space, &dim, &maxdim);
    EXPECT_EQ(dim, 1u) << name;
    EXPECT_EQ(maxdim, H5S_UNLIMITED) << name;
    H5Sclose(space);
    hid_t dcpl = H5Dget_create_plist(dset);
    EXPECT_EQ(H5Pget_layout(dcpl), H5D_CHUNKED) << name;
    H5Pclose(dcpl);
    H5Dclose(dset);
  }
  int64_t stage = 0;
  hid_t dset = H5Dopen2(file, "/ranks/stage", H5P_DEFAULT);
  H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &stage);
  EXPECT_EQ(stage, -1);
  H5Dclose(dset);
  H5Fclose(file);
}

TEST_F(StorageMetrics, ResumeCutsColumnsOfUnequalLengthToTheShortest) {
  const std::string p = path("metrics.h5");
  {
    MetricsFile m(p, false);
    for (int64_t i = 0; i < 4; ++i) m.append(step_row(i));
  }
  {
    // A crash in the middle of a batch: "loss" got a fifth row, the others did not.
    hid_t file = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t dset = H5Dopen2(file, "/steps/loss", H5P_DEFAULT);
    const hsize_t five = 5;
    ASSERT_GE(H5Dset_extent(dset, &five), 0);
    H5Dclose(dset);
    H5Fclose(file);
  }
  {
    MetricsFile m(p, true);
    EXPECT_EQ(m.rows("steps"), 4);
    m.append(step_row(4));
  }
  expect_tables(p, 5, 0, 0);
}

// A run with 100 steps per epoch (step_row) and 4 ranks (rank_row) checkpointed at epoch 1,
// step 3, then went on: epochs 1-2 complete and 40 steps of epoch 3, with an epoch row and
// rank rows for the 3rd epoch as a stopped run writes them. The resume drops what comes after
// the checkpoint, then writes it again.
TEST_F(StorageMetrics, ResumeDropsTheRowsPastTheCheckpoint) {
  const std::string p = path("metrics.h5");
  {
    MetricsFile m(p, false);
    for (int64_t i = 0; i < 240; ++i) m.append(step_row(i));
    for (int64_t i = 0; i < 3; ++i) m.append(epoch_row(i));
    for (int64_t i = 0; i < 12; ++i) m.append(rank_row(i));
  }
  expect_tables(p, 240, 3, 12);
  {
    MetricsFile m(p, true);
    EXPECT_EQ(m.truncate_after(1, 3), (240 - 103) + (3 - 1) + (12 - 4));
    EXPECT_EQ(m.rows("steps"), 103);  // epoch 1, then steps 1..3 of epoch 2
    EXPECT_EQ(m.rows("epochs"), 1);
    EXPECT_EQ(m.rows("ranks"), 4);
    EXPECT_EQ(m.truncate_after(1, 3), 0);  // nothing more to drop
  }
  expect_tables(p, 103, 1, 4);  // every column cut, the values of the kept rows unchanged
  const auto steps = read_metrics_column(p, "steps", "step");
  EXPECT_EQ(std::vector<double>(steps.end() - 3, steps.end()), (std::vector<double>{1, 2, 3}));
  {
    MetricsFile m(p, true);
    EXPECT_EQ(m.truncate_after(1, 3), 0);
    for (int64_t i = 103; i < 250; ++i) m.append(step_row(i));
    for (int64_t i = 1; i < 3; ++i) m.append(epoch_row(i));
    for (int64_t i = 4; i < 12; ++i) m.append(rank_row(i));
    EXPECT_EQ(m.rows("steps"), 250);
  }
  expect_tables(p, 250, 3, 12);
}

// Columns longer than one chunk (1024 rows), cut in the middle of a chunk, at an epoch
// boundary (step 0), then extended again past the old length.
TEST_F(StorageMetrics, TruncateAcrossChunksAndAtAnEpochBoundary) {
  const std::string p = path("metrics.h5");
  {
    MetricsFile m(p, false);
    for (int64_t i = 0; i < 3000; ++i) m.append(step_row(i));  // epochs 1..30
    for (int64_t i = 0; i < 30; ++i) m.append(epoch_row(i));
    for (int64_t i = 0; i < 120; ++i) m.append(rank_row(i));
  }
  {
    MetricsFile m(p, true);
    m.truncate_after(12, 0);
    EXPECT_EQ(m.rows("steps"), 1200);
    EXPECT_EQ(m.rows("epochs"), 12);
    EXPECT_EQ(m.rows("ranks"), 48);
  }
  expect_tables(p, 1200, 12, 48);
  {
    MetricsFile m(p, true);
    for (int64_t i = 1200; i < 3500; ++i) m.append(step_row(i));
    for (int64_t i = 12; i < 35; ++i) m.append(epoch_row(i));
  }
  expect_tables(p, 3500, 35, 48);
}

// Rows not yet written (buffered) are cut too, alone or together with rows on disk.
TEST_F(StorageMetrics, TruncateCutsBufferedRows) {
  const std::string p = path("metrics.h5");
  {
    MetricsFile m(p, false);
    for (int64_t i = 0; i < 150; ++i) m.append(step_row(i));
    m.flush();                                                 // 150 rows on disk
    for (int64_t i = 150; i < 230; ++i) m.append(step_row(i));  // 80 buffered
    for (int64_t i = 0; i < 3; ++i) m.append(epoch_row(i));
    EXPECT_EQ(m.truncate_after(1, 70), (230 - 170) + 2);  // cuts inside the buffer
    EXPECT_EQ(m.rows("steps"), 170);
    EXPECT_EQ(m.rows("epochs"), 1);
    for (int64_t i = 170; i < 180; ++i) m.append(step_row(i));
    EXPECT_EQ(m.truncate_after(1, 20), 180 - 120);  // cuts the disk rows, drops the buffer
    EXPECT_EQ(m.rows("steps"), 120);
    for (int64_t i = 120; i < 130; ++i) m.append(step_row(i));
    m.append(epoch_row(1));
  }
  expect_tables(p, 130, 2, 0);
}

// The kept rows are the prefix before the first row past the checkpoint: a row out of order
// after it is dropped as well.
TEST_F(StorageMetrics, TruncateKeepsThePrefix) {
  const std::string p = path("metrics.h5");
  {
    MetricsFile m(p, false);
    for (int64_t i = 0; i < 105; ++i) m.append(step_row(i));  // epoch 1, steps 1..5 of epoch 2
    m.append(step_row(50));                                   // epoch 1 again, step 51
    EXPECT_EQ(m.truncate_after(1, 2), 4);
    EXPECT_EQ(m.rows("steps"), 102);
  }
  expect_tables(p, 102, 0, 0);
}

TEST_F(StorageMetrics, TruncateErrors) {
  const std::string p = path("metrics.h5");
  MetricsFile m(p, false);
  m.append(step_row(0));
  const std::string msg = error_of([&] { m.truncate_after(-1, 0); });
  EXPECT_EQ(msg, "[metrics] '" + p + "': cannot drop the rows after epoch -1, step 0 (both must be >= 0)");
  EXPECT_NE(error_of([&] { m.truncate_after(0, -5); }).find("step -5"), std::string::npos);
  EXPECT_EQ(m.rows("steps"), 1);
}

TEST_F(StorageMetrics, Errors) {
  const std::string p = path("metrics.h5");
  {
    MetricsFile m(p, false);
    m.append(step_row(0));
    EXPECT_THROW(m.rows("bogus"), StorageError);
  }
  EXPECT_EQ(error_of([&] { read_metrics_column(path("missing.h5"), "steps", "loss"); }),
            "[metrics] '" + path("missing.h5") + "' does not exist");
  EXPECT_NE(error_of([&] { read_metrics_column(p, "bogus", "loss"); }).find("no table 'bogus'"), std::string::npos);
  EXPECT_NE(error_of([&] { read_metrics_column(p, "steps", "bogus"); }).find("no column 'bogus' in table 'steps'"),
            std::string::npos);

  const std::string junk = path("junk.h5");
  write_text(junk, "not an HDF5 file at all");
  const std::string msg = error_of([&] { MetricsFile m(junk, true); });
  EXPECT_NE(msg.find("[metrics] '" + junk + "' is not a readable HDF5 file"), std::string::npos) << msg;

  // A checkpoint is HDF5 but not a metrics file.
  const std::string ck = path("checkpoint.h5");
  write_checkpoint(ck, sample_checkpoint());
  const std::string msg2 = error_of([&] { MetricsFile m(ck, true); });
  EXPECT_NE(msg2.find("is not an arceus metrics file"), std::string::npos) << msg2;
}
