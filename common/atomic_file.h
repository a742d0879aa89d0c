// Crash-safe replacement of a file: a reader of `path`, also after a crash or a power loss at
// any moment, finds the previous complete file or the new complete one, never a part. Every
// file arceus rewrites goes through here: summary.json (the trainer and `arceus run`),
// report.html, the planner's calibration cache, checkpoint.h5 and metrics.h5 (which the HDF5
// library writes to the temporary path itself, then hands to replace_atomically).
//
// Torch-, MPI- and HDF5-free (library arceus_files), so that every folder can link it.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace arceus {

// A failed write, open, fsync or rename; the message names the file and strerror.
class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The temporary file a write of `path` goes through: "<path>.tmp", beside it (a rename is
// atomic only within one filesystem). A crash may leave it behind; the next write replaces it.
std::string temporary_path(const std::string& path);

// Writes `bytes` to temporary_path(path) (created or truncated), then replace_atomically()
// it over `path`. The directory must exist. On failure the temporary file is removed,
// `path` is untouched, and FileError names `path` and the reason.
void write_atomically(const std::string& path, std::string_view bytes);

// The atomic step, for a temporary file that something else wrote and closed (the HDF5
// library): fsync `tmp`, rename it over `path`, fsync the directory (so the rename itself
// survives a power loss; best effort, as some filesystems cannot fsync a directory). On
// failure `tmp` is removed and FileError names both paths.
void replace_atomically(const std::string& tmp, const std::string& path);

}  // namespace arceus
