#include "common/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace arceus {
namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// "<what>: <strerror(err)>", with `tmp` removed first (errno saved by the caller).
[[noreturn]] void fail(const std::string& tmp, const std::string& what, int err) {
  ::unlink(tmp.c_str());
  throw FileError(what + ": " + std::strerror(err));
}

// fsync of a whole file or directory by name; returns 0 or the errno.
int fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return errno;
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? 0 : err;
}

}  // namespace

std::string temporary_path(const std::string& path) { return path + ".tmp"; }

void write_atomically(const std::string& path, std::string_view bytes) {
  const std::string tmp = temporary_path(path);
  const std::string writing = "cannot write " + quoted(path) + " (through " + quoted(tmp) + ")";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail(tmp, writing, errno);
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail(tmp, writing, err);
    }
    done += size_t(n);
  }
  // Written back by replace_atomically's fsync (an fsync is of the file, not the descriptor);
  // close can still report a write error (NFS).
  if (::close(fd) != 0) fail(tmp, writing, errno);
  replace_atomically(tmp, path);
}

void replace_atomically(const std::string& tmp, const std::string& path) {
  if (const int err = fsync_path(tmp, false)) {
    fail(tmp, "cannot fsync " + quoted(tmp) + " (to replace " + quoted(path) + ")", err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    fail(tmp, "cannot rename " + quoted(tmp) + " over " + quoted(path), errno);
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  fsync_path(parent.empty() ? std::string(".") : parent.string(), true);  // best effort: see the header
}

}  // namespace arceus
