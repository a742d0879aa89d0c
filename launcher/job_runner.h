// `arceus job-runner --spec DIR` (hidden): one job of `arceus serve` on devices, in a process
// of its own. The shim (launcher/serve/child_runner.h) starts it under `mpirun --ompi-server
// URI -np 1` in a process group of its own; it opens an MPI port, accepts the job's devices one
// by one (each merges into the job's world as the next rank), runs the job as its rank 0 and
// ends. It tells the shim what happens in DIR/events.jsonl, one line per event, flushed:
//
//   {"kind": "port", "port": P}            the MPI port devices connect to
//   {"kind": "accepting", "device": k}     waiting for the job's k-th device
//   {"kind": "joined", "device": k}        it is rank k
//   {"kind": "log" | "step" | "epoch", ...} the JobObserver's events
//   {"kind": "result", "state", "error", "peer", "summary"}
//
// A file, not its stdout: when the shim kills the runner, what mpirun was still forwarding
// would be lost, and the shim must know the last step done. Its stdout (the trainer's own
// lines) goes to the shim's output. The shim asks it to stop by
// creating DIR/stop; when a device is lost it kills the runner's process group: Open MPI 4.1
// cannot take a dead peer out of a communicator (bench/mpi_dynamic/README.md), so the job's
// world is thrown away with its process, and the server's never holds a device.
#pragma once

#include <string>

#include "ranks/trainer.h"

namespace arceus {

class MpiTransport;

// DIR holds config.yaml (the job, canonical YAML) and run.json {"devices": K, "wait_limit":
// seconds, "threads": "auto" | N}.
int run_job_runner(MpiTransport& world, const std::string& spec_dir, TrainOptions train);

}  // namespace arceus
