// The shim's MPI world (see mpi_runner.h).
#include "launcher/serve/mpi_runner.h"

#include <csignal>

#include "launcher/serve/child_runner.h"
#include "ranks/mpi_transport.h"

namespace arceus::serve {

MpiRunner::MpiRunner(MpiTransport& world, double device_timeout)
    : world_(world), device_timeout_(device_timeout), hosts_(world.all_hosts()) {}

MpiRunner::~MpiRunner() = default;

int MpiRunner::rank() const { return world_.rank(); }
int MpiRunner::world_size() const { return world_.size(); }

int MpiRunner::serve_worker(const TrainOptions& train) {
  // A Ctrl-C on mpirun reaches every rank; rank 0 alone decides when the workers end (it
  // stops the job in flight, then sends the shutdown), so the workers ignore it.
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGTERM, SIG_IGN);
  return worker_loop(world_, train, /*serve=*/true);
}

JobResult MpiRunner::run(const Config& config, const TrainOptions& options, JobObserver& observer) {
  return run_job(world_, config, options, &observer);
}

DeviceRun MpiRunner::run_on_devices(ServeState& s, const std::vector<int>& devices, const Config& config,
                                    const TrainOptions& options, JobObserver& observer) {
  return run_in_child(s, devices, config, options, observer, device_timeout_);
}

void MpiRunner::shutdown_workers() { arceus::shutdown_workers(world_); }

void MpiRunner::abort() { world_.abort(1); }

}  // namespace arceus::serve
