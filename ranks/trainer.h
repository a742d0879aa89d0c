// A job's life on every rank: set-up on rank 0 and its broadcast, then the orchestrator on
// rank 0 (ranks/orchestrator.h) and the stage workers on ranks 1..S (ranks/stage_worker.h).
// One process (no mpirun) runs the reference: rank 0 and one stage as two threads over the
// in-process transport, through the same code. Torch-free header.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "ranks/run_state.h"
#include "partition/partition.h"
#include "ranks/transport.h"
#include "storage/storage.h"

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
  // The transport ranks a job may place its stages on, in stage order (empty: 1..N-1). The
  // REST shim lists the world's stage ranks, then the devices registered for the job.
  std::vector<int> stage_ranks;
};

// Events of a running job, delivered on rank 0's main thread (the thread that calls MPI).
// The REST shim records them; `arceus train` passes none. Implementations must be quick.
class JobObserver {
 public:
  virtual ~JobObserver() = default;
  virtual void on_log(const std::string& line) {}
  // {"epoch", "step", "steps", "loss", "accuracy", "samples_per_second"} per training batch.
  virtual void on_step(const nlohmann::json& step) {}
  // The epoch's entry of summary.json (see docs/outputs.md), after each epoch.
  virtual void on_epoch(const nlohmann::json& epoch) {}
  // Polled between batches; true ends the job after the batches in flight ("stopped").
  virtual bool stop_requested() { return false; }
};

struct JobResult {
  RunState state = RunState::Completed;
  std::string error;      // when failed
  nlohmann::json summary; // what summary.json holds
};

// Rank 0 only. Plans the partition, checks the output directory, loads the data, checks the
// model against it, broadcasts the job to the workers, then orchestrates it. A set-up error
// (ConfigError, DataError, PartitionError) is returned as state "failed" after the workers
// were told (they go back to waiting, or exit in `train`). Errors during training throw.
// A world of one process runs the reference in-process (see above).
JobResult run_job(Transport& transport, const Config& config, const TrainOptions& options, JobObserver* observer);

// The whole job in this process: rank 0 on the calling thread and `ranks` - 1 stage ranks as
// threads over the in-process transport, placed as `mpirun -np ranks` would place them (but
// reported as one process, its inputs unquantized). For tests that compare schedules and
// partitions with the reference without mpirun. A rank waiting longer than `timeout_seconds`
// for a message fails the job (0 = never).
JobResult run_in_process(int ranks, const Config& config, const TrainOptions& options, JobObserver* observer,
                         double timeout_seconds = 0);

// `arceus eval`: validation loss and accuracy of `checkpoint`'s parameters on the config's
// validation split, in this process (the reference placement). Throws on a set-up error.
struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t samples = 0;
  std::string dataset;
};
EvalResult evaluate_checkpoint(const Config& config, const CheckpointData& checkpoint, const TrainOptions& options,
                               const std::string& host);

// Rank 0 only: tells a set-up failure found before run_job (e.g. a config that does not
// parse) to the workers, so none of them waits forever.
void broadcast_setup_failure(Transport& transport, const std::string& error);

// Rank 0 only: ends worker_loop on every other rank.
void shutdown_workers(Transport& transport);

// A worker's way to grow its world when a device joins a server: called on every rank but 0
// with the current transport and rank 0's port when rank 0 broadcasts an accept; returns the
// merged transport (the device's ranks after the current ones), used from then on.
using AcceptHook = std::function<Transport&(Transport& current, const std::string& port)>;

// Ranks 1..N-1: wait (yielding) for jobs from rank 0 and run their stage of each. With
// `serve` false, returns after one job (exit code 0, or 1 when its set-up failed); with
// `serve` true, loops until shutdown_workers. Accepts are not jobs: they call `accept`.
int worker_loop(Transport& transport, const TrainOptions& options, bool serve, const AcceptHook& accept = {});

// Rank 0 only: every worker is to accept one device on `port` (then rank 0 accepts too).
void broadcast_accept(Transport& transport, const std::string& port);

}  // namespace arceus
