// The BLAS under LibTorch decides every speed figure (netlib's reference BLAS is ~40x slower
// than OpenBLAS with a kernel the CPU supports). OpenBLAS reads OPENBLAS_CORETYPE and the
// dynamic loader reads LD_LIBRARY_PATH only when the process starts, so the launcher fixes
// both in the environment and re-executes itself once, before MPI or torch initialise.
#pragma once

#include <string>

namespace arceus {

// Call first thing in main(). May replace the process (execv) once; returns otherwise.
// Also sets OMP_WAIT_POLICY=PASSIVE (LibTorch's OpenMP pool otherwise spins against
// OpenBLAS's threads). Honours a user's OPENBLAS_CORETYPE and OMP_WAIT_POLICY. ARCEUS_NO_BLAS_REEXEC=1 disables it.
void ensure_blas(char** argv);

// The core OPENBLAS_CORETYPE should name for this CPU ("SkylakeX", "Haswell", or "" to leave
// OpenBLAS's own detection), from /proc/cpuinfo flags.
std::string preferred_openblas_core(const std::string& cpu_flags);

// The first /proc/cpuinfo line starting with `name` ("flags", "model name"): its value after
// the colon, leading spaces removed; "" when there is none.
std::string cpuinfo_field(const std::string& name);

struct BlasInfo {
  std::string library;  // path of the loaded libblas / libopenblas
  std::string core;     // OpenBLAS core name ("" if not OpenBLAS)
  std::string config;   // OpenBLAS build config ("" if not OpenBLAS)
  bool is_openblas() const { return !core.empty(); }
  std::string describe() const;
};
BlasInfo blas_info();

// Validator of every --threads option (CLI11 check): "" when `value` is "auto" or a positive
// integer, else the message.
std::string check_threads_option(const std::string& value);

// OpenBLAS threads (LibTorch's at::set_num_threads does not reach a pthread OpenBLAS).
void set_blas_threads(int threads);

}  // namespace arceus
