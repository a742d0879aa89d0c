// The shim's MPI world (see mpi_runner.h).
#include "launcher/serve/mpi_runner.h"

#include <csignal>

#include "ranks/mpi_transport.h"

namespace arceus::serve {

MpiRunner::MpiRunner(MpiTransport& world, double device_timeout)
    : world_(world), device_timeout_(device_timeout), hosts_(world.all_hosts()) {}

MpiRunner::~MpiRunner() = default;

int MpiRunner::rank() const { return world_.rank(); }
int MpiRunner::world_size() const { return world_.size(); }

MpiTransport& MpiRunner::current() { return grown_.empty() ? world_ : *grown_.back(); }

int MpiRunner::serve_worker(const TrainOptions& train) {
  // A Ctrl-C on mpirun reaches every rank; rank 0 alone decides when the workers end (it
  // stops the job in flight, then sends the shutdown), so the workers ignore it.
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGTERM, SIG_IGN);
  AcceptHook grow = [this](Transport& current, const std::string& port) -> Transport& {
    grown_.push_back(static_cast<MpiTransport&>(current).accept(port));
    grown_.back()->set_wait_limit(device_timeout_);
    return *grown_.back();
  };
  return worker_loop(world_, train, /*serve=*/true, grow);
}

std::string MpiRunner::open_port() { return MpiTransport::open_port(); }

JobResult MpiRunner::run(const Config& config, const TrainOptions& options, JobObserver& observer) {
  // No stage rank at all (one process, no device): the reference run, in-process.
  Transport& on = options.stage_ranks.empty() ? static_cast<Transport&>(world_) : current();
  return run_job(on, config, options, &observer);
}

int MpiRunner::accept_device(const std::string& port) {
  broadcast_accept(current(), port);
  grown_.push_back(current().accept(port));
  grown_.back()->set_wait_limit(device_timeout_);
  return current().size() - 1;
}

void MpiRunner::shutdown_workers() { arceus::shutdown_workers(current()); }

void MpiRunner::abort() { current().abort(1); }

}  // namespace arceus::serve
