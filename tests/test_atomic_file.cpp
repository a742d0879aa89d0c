// write_atomically / replace_atomically (common/atomic_file.h): the bytes arrive, no temporary
// file is left, an existing file is replaced, and a failure names the path and the reason.
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/atomic_file.h"
#include "support/errors.h"
#include "support/files.h"

namespace fs = std::filesystem;
using arceus::FileError;
namespace test = arceus::test;

namespace {

class AtomicFile : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return tmp_.file(name); }
  static std::string read(const std::string& p) { return test::read_text(p); }

  test::TempDir tmp_{"arceus_files_"};
  fs::path dir_ = tmp_.path();
};

TEST_F(AtomicFile, WritesTheBytesAndLeavesNoTemporaryFile) {
  const std::string p = path("summary.json");
  const std::string bytes = std::string("{\"state\": \"running\"}\n") + '\0' + "binary\xff";
  arceus::write_atomically(p, bytes);
  EXPECT_EQ(read(p), bytes);
  EXPECT_EQ(arceus::temporary_path(p), p + ".tmp");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1) << "only the file itself";
}

TEST_F(AtomicFile, WritesAnEmptyFile) {
  const std::string p = path("empty");
  arceus::write_atomically(p, "");
  EXPECT_TRUE(fs::is_regular_file(p));
  EXPECT_EQ(fs::file_size(p), 0u);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(AtomicFile, ReplacesAnExistingFile) {
  const std::string p = path("summary.json");
  arceus::write_atomically(p, std::string(4096, 'a'));
  arceus::write_atomically(p, "short");
  EXPECT_EQ(read(p), "short");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(AtomicFile, ReplacesATemporaryFileLeftByACrash) {
  const std::string p = path("report.html");
  std::ofstream(p + ".tmp") << "half of an earlier write, longer than the new one";
  arceus::write_atomically(p, "new");
  EXPECT_EQ(read(p), "new");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(AtomicFile, UnwritableDirectoryIsAnErrorNamingThePath) {
  fs::path dir = dir_ / "read-only";
  fs::create_directory(dir);
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  // Permission bits do not bind root: sysfs, where not even root creates a file, stands in.
  if (::geteuid() == 0) {
    struct statfs fs_info {};
    if (::statfs("/sys", &fs_info) != 0 || fs_info.f_type != SYSFS_MAGIC) {
      GTEST_SKIP() << "running as root, and no sysfs at /sys: no directory root cannot write to";
    }
    dir = "/sys";
  }
  const std::string p = (dir / "summary.json").string();
  const std::string msg = test::expected_error<FileError>([&] { arceus::write_atomically(p, "x"); });
  EXPECT_NE(msg.find("'" + p + "'"), std::string::npos) << msg;
  const bool reason = msg.find(std::strerror(EACCES)) != std::string::npos ||
                      msg.find(std::strerror(EROFS)) != std::string::npos;
  EXPECT_TRUE(reason) << "no strerror in: " << msg;
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(AtomicFile, MissingDirectoryIsAnErrorNamingThePath) {
  const std::string p = path("no-such-dir/summary.json");
  const std::string msg = test::expected_error<FileError>([&] { arceus::write_atomically(p, "x"); });
  EXPECT_NE(msg.find("'" + p + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::strerror(ENOENT)), std::string::npos) << msg;
}

TEST_F(AtomicFile, ReplaceAtomicallyMovesAFinishedFile) {
  const std::string p = path("checkpoint.h5"), tmp = p + ".tmp";
  std::ofstream(p) << "old";
  std::ofstream(tmp) << "written by someone else";
  arceus::replace_atomically(tmp, p);
  EXPECT_EQ(read(p), "written by someone else");
  EXPECT_FALSE(fs::exists(tmp));
}

TEST_F(AtomicFile, ReplaceAtomicallyWithoutTheTemporaryFileNamesBoth) {
  const std::string p = path("checkpoint.h5"), tmp = p + ".tmp";
  std::ofstream(p) << "old";
  const std::string msg = test::expected_error<FileError>([&] { arceus::replace_atomically(tmp, p); });
  EXPECT_NE(msg.find("'" + tmp + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'" + p + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::strerror(ENOENT)), std::string::npos) << msg;
  EXPECT_EQ(read(p), "old") << "the file is untouched";
}

TEST_F(AtomicFile, RenameOverADirectoryFailsAndRemovesTheTemporaryFile) {
  const std::string p = path("taken");
  fs::create_directories(fs::path(p) / "inside");  // rename(2) cannot replace a non-empty directory
  const std::string msg = test::expected_error<FileError>([&] { arceus::write_atomically(p, "x"); });
  EXPECT_NE(msg.find("'" + p + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rename"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_TRUE(fs::is_directory(p));
}

}  // namespace
