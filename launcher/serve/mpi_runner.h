// The shim's MPI part: the world jobs run on; a job on devices runs in a child job runner
// (child_runner.h). Rank 0's main thread uses it as the queue loop's JobRunner; the other ranks
// wait in serve_worker.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "launcher/serve/runner.h"

namespace arceus {
class MpiTransport;
}

namespace arceus::serve {

class MpiRunner final : public JobRunner {
 public:
  // Every rank, once: the hosts of the world's ranks are gathered (a collective).
  MpiRunner(MpiTransport& world, double device_timeout);
  ~MpiRunner() override;

  int rank() const;                                          // in the MPI world
  int world_size() const;                                    // the MPI world's ranks
  const std::vector<std::string>& hosts() const { return hosts_; }  // by world rank

  // Ranks 1..N-1: run their stage of each job rank 0 broadcasts, until rank 0's shutdown.
  // Returns the exit code.
  int serve_worker(const TrainOptions& train);

  // Rank 0's JobRunner: a job without stage ranks runs in-process (the reference run), any
  // other on the MPI world.
  JobResult run(const Config& config, const TrainOptions& options, JobObserver& observer) override;
  // A job on devices: in a child job runner with them (run_in_child).
  DeviceRun run_on_devices(ServeState& s, const std::vector<int>& devices, const Config& config,
                           const TrainOptions& options, JobObserver& observer) override;

  // Rank 0 at the end: the workers leave serve_worker.
  void shutdown_workers();
  // Rank 0 when a job broke the ranks' step: the workers wait for no broadcast, so the world
  // ends the hard way.
  [[noreturn]] void abort();

 private:
  MpiTransport& world_;
  double device_timeout_;
  std::vector<std::string> hosts_;
};

}  // namespace arceus::serve
