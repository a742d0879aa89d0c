// A job on devices, in a child process of the shim (see launcher/job_runner.h for the other
// side): the job runner is started under its own mpirun and process group, the job's devices
// are told (through their heartbeats) to connect to it one by one, its events come back as
// lines on its stdout, and the devices' heartbeats are watched while it runs. A device that
// stops answering for ServeState::heartbeat_timeout seconds, or whose MPI process fails, is
// lost: the runner's process group is killed (its communicators with it), the other devices
// are told to kill their MPI processes, and the caller decides what follows (queue.cpp).
#pragma once

#include <vector>

#include "launcher/serve/runner.h"

namespace arceus::serve {

// Runs `config` on rank 0 of a new job runner and `devices` (ids, in stage order) as ranks
// 1..K. `wait_limit`: seconds a rank of the job waits for a message before it fails the job (a
// device alive but stuck). Called on the queue loop's thread without the lock.
DeviceRun run_in_child(ServeState& s, const std::vector<int>& devices, const Config& config, const TrainOptions& options,
                       JobObserver& observer, double wait_limit);

}  // namespace arceus::serve
