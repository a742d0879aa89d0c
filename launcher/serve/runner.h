// Rank 0's main thread: the queue loop, and the JobRunner it trains through.
//
// The loop (queue.cpp) is MPI-free: it waits for queued jobs, moves each job through the state
// machine (Start, then the end of its run; a job on devices that loses one: DeviceLost, then
// Resume on the devices left or Fail) and records what the run reports. Everything that needs
// MPI is the JobRunner's: MpiRunner (mpi_runner.h) runs jobs on the MPI world with run_job, and
// a job on devices in a child job runner (child_runner.h); a test gives its own (a fake).
#pragma once

#include <string>
#include <vector>

#include "ranks/trainer.h"

namespace arceus::serve {

struct ServeState;

// What a run on devices reports: its result, or the device lost mid-run (then `result` is not
// the job's end: the job recovers or fails).
struct DeviceRun {
  JobResult result;
  int lost = 0;     // the device lost (0: none)
  std::string why;  // how the loss was noticed, e.g. "no heartbeat for 5.0 s"
};

class JobRunner {
 public:
  virtual ~JobRunner() = default;
  // Trains one job to its end, calling `observer` on this thread. `options.stage_ranks` are
  // the ranks its stages may use (empty: the one-process world). A set-up error comes back
  // as a failed result; an exception means the ranks may be out of step (the server then
  // refuses further jobs).
  virtual JobResult run(const Config& config, const TrainOptions& options, JobObserver& observer) = 0;
  // Trains one job on `devices` (their ids, in stage order) until its end or the loss of one
  // of them. The default takes no devices (the job fails, saying so).
  virtual DeviceRun run_on_devices(ServeState& s, const std::vector<int>& devices, const Config& config,
                                   const TrainOptions& options, JobObserver& observer);
};

// Runs queued jobs one at a time through `runner` until shutdown (POST /api/shutdown, a
// signal, the HTTP server ending). `train` holds the per-job options of the command line.
void run_queue(ServeState& s, JobRunner& runner, const TrainOptions& train);

// After run_queue: every device is told to leave (its next heartbeat's answer); waits up to
// `seconds` for them to have heard it.
void dismiss_devices(ServeState& s, double seconds);

// After run_queue: every job still queued is stopped (the server shut down before it started).
void stop_queued(ServeState& s);

}  // namespace arceus::serve
