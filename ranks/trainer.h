// `arceus train`: set-up on rank 0, then the orchestrator loop on rank 0 and the stage loop
// on ranks 1..S (or everything on rank 0 when the world has one process). Torch-free header.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "config/config.h"
#include "ranks/comm.h"

namespace arceus {

struct TrainOptions {
  std::string config_path;
  std::vector<Override> overrides;
  std::string threads = "auto";  // "auto" or a positive integer: LibTorch threads per rank
  bool quiet = false;            // no live progress line
  std::string blas;              // description of the BLAS in use, for the log and summary
  // Sets this process's compute threads (LibTorch and BLAS); installed by the launcher.
  std::function<void(int)> set_threads;
};

// Runs the whole job on every rank. Returns the process exit code (0 on success). Errors in
// set-up (config, data, partition) are printed once by rank 0 and every rank returns 1.
// Errors during training are thrown (the launcher prints them and aborts the world).
int run_train(Comm& comm, const TrainOptions& options);

}  // namespace arceus
