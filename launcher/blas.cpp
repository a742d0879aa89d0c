#include "launcher/blas.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace arceus {

std::string cpuinfo_field(const std::string& name) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return "";
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    return value;
  }
  return "";
}

namespace {

constexpr const char* kOpenBlasDirs[] = {
    "/usr/lib/x86_64-linux-gnu/openblas-pthread",
    "/usr/lib/x86_64-linux-gnu/openblas-openmp",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread",
    "/usr/lib/aarch64-linux-gnu/openblas-openmp",
};

bool has_flag(const std::string& flags, const char* flag) {
  std::istringstream in(flags);
  std::string f;
  while (in >> f)
    if (f == flag) return true;
  return false;
}

std::string cpu_flags() { return cpuinfo_field("flags"); }

// Resolved path of the system's libblas.so.3 (the alternatives symlink).
std::string system_blas() {
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/libblas.so.3", "/usr/lib/aarch64-linux-gnu/libblas.so.3"}) {
    char buf[4096];
    if (realpath(p, buf)) return buf;
  }
  return "";
}

}  // namespace

std::string preferred_openblas_core(const std::string& flags) {
  if (has_flag(flags, "avx512f") && has_flag(flags, "avx512bw") && has_flag(flags, "avx512vl") &&
      has_flag(flags, "avx512dq"))
    return "SkylakeX";
  if (has_flag(flags, "avx2") && has_flag(flags, "fma")) return "Haswell";
  return "";
}

void ensure_blas(char** argv) {
  const char* disabled = std::getenv("ARCEUS_NO_BLAS_REEXEC");
  if ((disabled && std::strcmp(disabled, "1") == 0) || std::getenv("ARCEUS_BLAS_REEXECED")) return;
  bool changed = false;
  if (!std::getenv("OPENBLAS_CORETYPE")) {
    const std::string core = preferred_openblas_core(cpu_flags());
    if (!core.empty()) {
      setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
      changed = true;
    }
  }
  // LibTorch's OpenMP threads spin after each parallel region by default; beside OpenBLAS's
  // own threads on a small machine that made 2 threads ~4x slower than 1 (measured).
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    changed = true;
  }
  // Whatever the alternatives say, load OpenBLAS's libblas.so.3 when it is installed.
  if (system_blas().find("openblas") == std::string::npos) {
    for (const char* dir : kOpenBlasDirs) {
      if (access((std::string(dir) + "/libblas.so.3").c_str(), R_OK) == 0) {
        const char* old = std::getenv("LD_LIBRARY_PATH");
        std::string path = dir;
        if (old && *old) path += std::string(":") + old;
        setenv("LD_LIBRARY_PATH", path.c_str(), 1);
        changed = true;
        break;
      }
    }
  }
  if (!changed) return;
  setenv("ARCEUS_BLAS_REEXECED", "1", 1);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "[blas] warning: could not re-execute with OpenBLAS settings: %s\n", std::strerror(errno));
}

BlasInfo blas_info() {
  BlasInfo info;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (path.find("libopenblas") != std::string::npos || path.find("libblas.so") != std::string::npos) {
      char buf[4096];
      info.library = realpath(path.c_str(), buf) ? buf : path;
      break;
    }
  }
  using NameFn = char* (*)();
  if (auto fn = reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) info.core = fn();
  if (auto fn = reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) info.config = fn();
  return info;
}

std::string BlasInfo::describe() const {
  if (is_openblas()) return "OpenBLAS, core " + core + " (" + library + ")";
  if (library.empty()) return "unknown BLAS";
  return "NOT OpenBLAS: " + library + " (expect ~40x slower matrix products)";
}

std::string check_threads_option(const std::string& value) {
  if (value == "auto") return "";
  try {
    size_t pos = 0;
    if (std::stoi(value, &pos) >= 1 && pos == value.size()) return "";
  } catch (...) {
  }
  return "expected 'auto' or a positive integer, got '" + value + "'";
}

void set_blas_threads(int threads) {
  using SetFn = void (*)(int);
  if (auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(threads);
}

}  // namespace arceus
