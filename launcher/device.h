// `arceus device --api-url http://HOST:4000 --job-id ID`: this machine joins a running
// `arceus serve` as a stage of a job, as the original's `python -m nn.device_client` did.
// It registers with the REST shim and, when its job starts, connects to the job's runner with
// MPI's dynamic-process calls (through the server's ompi-server rendezvous).
#pragma once

#include <string>

#include "ranks/trainer.h"

namespace CLI {
class App;
}

namespace arceus {

class MpiTransport;

struct DeviceOptions {
  std::string api_url;  // http://HOST:PORT of arceus serve
  std::string job_id;   // the job this device takes a stage of
  std::string token;    // the server's --token, when it has one
  double timeout = 120; // seconds a wait for the server's messages may last in a job
  bool once = false;    // leave after the job
  int heartbeat_ms = 1000;  // between heartbeats
};

// "10.0.0.5" -> "http://10.0.0.5:4000"; a URL with a scheme and a port is kept (less any
// trailing slash).
std::string normalize_api_url(std::string url);

CLI::App* add_device_command(CLI::App& app, DeviceOptions& device, TrainOptions& train);

// `arceus device` is an agent without MPI: it registers, then sends a heartbeat every second
// and, when the server says so, runs its MPI process for a job (this same command under
// `mpirun --ompi-server URI -np 1`, in a process group of its own, which it kills when the
// server says the job's runner is gone). It leaves (exit 0) when DELETE /api/devices/<port>
// unregisters it, on Ctrl-C between jobs, or after its job with --once. Returns the agent's exit
// code, or -1 in the device's MPI process (which then starts MPI and calls run_device).
int device_agent_if_needed(const DeviceOptions& device, const TrainOptions& train, char** argv);

// The device's MPI process: connects to the job runner's port (ARCEUS_DEVICE_MPI_PORT), merges,
// serves its stage of the job until the runner's shutdown. Returns the exit code.
int run_device(MpiTransport& world, const DeviceOptions& device, const TrainOptions& train);

}  // namespace arceus
