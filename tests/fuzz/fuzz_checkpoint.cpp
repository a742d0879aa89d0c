// Fuzz target: the checkpoint reader (storage/storage.h), HDF5 from bytes.
//
// Each input is written to one temporary file and read with read_checkpoint, which takes a
// path; what it returns is printed as `arceus inspect` does and its config attribute parsed as
// `arceus eval` does. The contract checked: StorageError (or ConfigError for the config) or
// success; no other exception, no crash, no sanitizer report. The limits are lowered
// (ARCEUS_LIMIT_MAX_PARAMETERS=1000000: at most 3,000,000 values per checkpoint) so that what
// the reader may allocate stays far below the fuzzer's -rss_limit_mb.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "config/config.h"
#include "storage/storage.h"
#include "tests/fuzz/fuzz.h"

using namespace arceus;

namespace {
std::string g_path;
}

// HDF5 1.10.8 asks malloc for SIZE_MAX bytes for some corrupt object headers (H5C_protect) and
// handles the NULL it gets as a read error; ASan would report the request instead. So here, as
// outside ASan, malloc may return NULL (operator new still throws). ASAN_OPTIONS overrides it.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("ARCEUS_LIMIT_MAX_PARAMETERS", "1000000", 1);
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/arceus-fuzz-checkpoint-XXXXXX";
  const int fd = mkstemp(pattern.data());
  if (fd < 0) fuzz::violated("cannot create a temporary file from " + pattern);
  close(fd);
  g_path = pattern;
  std::atexit([] { unlink(g_path.c_str()); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = open(g_path.c_str(), O_WRONLY | O_TRUNC);
  if (fd < 0 || (size > 0 && write(fd, data, size) != static_cast<ssize_t>(size))) fuzz::violated("cannot write " + g_path);
  close(fd);
  try {
    const CheckpointData ck = read_checkpoint(g_path);
    std::ostringstream out;
    print_checkpoint(ck, out);
    parse_config(ck.config_yaml, {}, g_path + " (config attribute)");
  } catch (const StorageError&) {
  } catch (const ConfigError&) {
  }
  return 0;
}
