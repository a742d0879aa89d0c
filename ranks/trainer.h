// `arceus train`: set-up on rank 0, then the orchestrator loop on rank 0 and the stage loop
// on ranks 1..S (or everything on rank 0 when the world has one process). Torch-free header.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "partition/partition.h"
#include "ranks/comm.h"

namespace arceus {

struct TrainOptions {
  std::string config_path;
  std::vector<Override> overrides;
  std::string threads = "auto";  // "auto" or a positive integer: LibTorch threads per rank
  bool quiet = false;            // no live progress line
  std::string progress = "lines";  // bar | lines | none (the launcher resolves "auto")
  std::string resume;            // checkpoint to resume from ("" = config's resume key decides)
  std::string blas;              // description of the BLAS in use, for the log and summary
  // Sets this process's compute threads (LibTorch and BLAS); installed by the launcher.
  std::function<void(int)> set_threads;
};

// Events of a running job, delivered on rank 0's main thread (the thread that calls MPI).
// The REST shim records them; `arceus train` passes none. Implementations must be quick.
class JobObserver {
 public:
  virtual ~JobObserver() = default;
  virtual void on_log(const std::string& line) {}
  // {"epoch", "step", "steps", "loss", "accuracy", "samples_per_second"} per training batch.
  virtual void on_step(const nlohmann::json& step) {}
  // The epoch's entry of summary.json (see README), after each epoch.
  virtual void on_epoch(const nlohmann::json& epoch) {}
  // Polled between batches; true ends the job after the batches in flight ("stopped").
  virtual bool stop_requested() { return false; }
};

// The stages of a job on a world of `world` ranks: rank 0 orchestrates, so world - 1 stages
// (or partition.stages / partition.layers); one stage when world is 1. Throws PartitionError.
// `vocab` (a GPT's vocabulary size) refines the balanced partition of a transformer; 0 = not
// known yet (a 256-character stand-in).
std::vector<LayerRange> make_plan(const Config& config, int world, int64_t vocab = 0);

struct JobResult {
  std::string state;      // completed | stopped | failed
  std::string error;      // when failed
  nlohmann::json summary; // what summary.json holds
};

// Rank 0 only. Plans the partition, checks the output directory, loads the data, checks the
// model against it, broadcasts the job to the workers, then orchestrates it. A set-up error
// (ConfigError, DataError, PartitionError) is returned as state "failed" after the workers
// were told (they go back to waiting, or exit in `train`). Errors during training throw.
JobResult run_job(Comm& comm, const Config& config, const TrainOptions& options, JobObserver* observer);

// Rank 0 only: tells a set-up failure found before run_job (e.g. a config that does not
// parse) to the workers, so none of them waits forever.
void broadcast_setup_failure(Comm& comm, const std::string& error);

// Rank 0 only: ends worker_loop on every other rank.
void shutdown_workers(Comm& comm);

// Ranks 1..N-1: wait (yielding) for jobs from rank 0 and run their stage of each. With
// `serve` false, returns after one job (exit code 0, or 1 when its set-up failed); with
// `serve` true, loops until shutdown_workers.
int worker_loop(Comm& comm, const TrainOptions& options, bool serve);

// `arceus eval`: validation loss and accuracy of a checkpoint's weights on the config's
// validation split, on one process (an error under mpirun with more ranks). Returns the exit code.
int run_eval(Comm& comm, const TrainOptions& options, const std::string& checkpoint);

// `arceus generate`: text from a transformer checkpoint (one process, no MPI).
struct GenerateOptions {
  std::string checkpoint;
  std::string prompt;        // UTF-8; every character must be in the checkpoint's vocabulary
  int64_t tokens = 200;      // characters to generate
  double temperature = 0.8;  // > 0 samples from softmax(logits / T); 0 = argmax
  uint64_t seed = 1;         // the sampling generator's seed
  int threads = 1;
};
// Prints the prompt followed by the generated text. Returns the exit code (errors on stderr).
int run_generate(const GenerateOptions& options);

// `arceus train`: the whole job on every rank. Returns the process exit code (0 on
// success). Set-up errors are printed once by rank 0 and every rank returns 1. Errors
// during training are thrown (the launcher prints them and aborts the world).
int run_train(Comm& comm, const TrainOptions& options);

}  // namespace arceus
