// `arceus device --api-url http://HOST:4000 --job-id ID`: this machine joins a running
// `arceus serve` as a stage of a job, as the original's `python -m nn.device_client` did.
// It registers with the REST shim, connects to rank 0 with MPI's dynamic-process calls
// (through the server's ompi-server rendezvous), merges into the server's world and serves
// its stage of each job until the server shuts down.
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
};

// "10.0.0.5" -> "http://10.0.0.5:4000"; a URL with a scheme and a port is kept (less any
// trailing slash).
std::string normalize_api_url(std::string url);

CLI::App* add_device_command(CLI::App& app, DeviceOptions& device, TrainOptions& train);

// Before MPI starts: a device must run under an mpirun that knows the server's ompi-server.
// Unless this process is that re-execution already, fetches the rendezvous from
// GET /api/devices/connect-info and re-executes `mpirun --ompi-server URI -np 1 <this
// command>`; returns only in the re-executed process. Exits with status 1 and a message when
// the server cannot be reached or refuses.
void device_reexec_if_needed(const DeviceOptions& device, char** argv);

// Registers, connects, merges, then serves jobs until the server's shutdown. Returns the exit
// code.
int run_device(MpiTransport& world, const DeviceOptions& device, const TrainOptions& train);

}  // namespace arceus
