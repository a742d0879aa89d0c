// Rank 0's main thread: the queue loop, and the JobRunner it trains through.
//
// The loop (queue.cpp) is MPI-free: it waits for queued jobs and connecting devices, moves
// each job through the state machine (Start, then the end of its run) and records what the
// run reports. Everything that needs the world is the JobRunner's: MpiRunner
// (mpi_runner.h) runs jobs on the MPI world with run_job and accepts devices; a test gives
// its own (a fake, or run_in_process over the loopback transport).
#pragma once

#include <string>

#include "ranks/trainer.h"

namespace arceus::serve {

struct ServeState;

class JobRunner {
 public:
  virtual ~JobRunner() = default;
  // Trains one job to its end, calling `observer` on this thread. `options.stage_ranks` are
  // the ranks its stages may use (empty: the one-process world). A set-up error comes back
  // as a failed result; an exception means the ranks may be out of step (the server then
  // refuses further jobs).
  virtual JobResult run(const Config& config, const TrainOptions& options, JobObserver& observer) = 0;
  // Accepts the device connecting to rank 0's `port` (blocks until it connects); returns the
  // rank it got in the grown world.
  virtual int accept_device(const std::string& port) = 0;
};

// Runs queued jobs one at a time through `runner` until shutdown (POST /api/shutdown, a
// signal, the HTTP server ending); accepts devices between jobs. `train` holds the per-job
// options of the command line.
void run_queue(ServeState& s, JobRunner& runner, const TrainOptions& train);

// After run_queue: every job still queued is stopped (the server shut down before it started).
void stop_queued(ServeState& s);

}  // namespace arceus::serve
