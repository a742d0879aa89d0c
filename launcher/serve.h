// `arceus serve`: the REST shim. Rank 0 answers the original Flask server's endpoints (port
// 4000, same paths, bodies and status codes) and runs the jobs on the world; ranks 1..N-1 wait
// in worker_loop for the jobs rank 0 broadcasts. docs/rest-api.md documents the endpoints.
//
// Threads on rank 0: HTTP threads (cpp-httplib's pool, launcher/serve/http.cpp) parse and
// validate requests and record jobs (launcher/serve/routes.h); the main thread, the only one
// that calls MPI, takes jobs to train from a queue (launcher/serve/runner.h) and runs them one
// at a time with run_job (launcher/serve/mpi_runner.h).
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace arceus {

class MpiTransport;
struct TrainOptions;

struct ServeOptions {
  std::string host = "127.0.0.1";       // address to bind; 0.0.0.0 to listen on every interface
  int port = 4000;                      // 0 = any free port (printed at start)
  std::string token;                    // non-empty: POST requests need "Authorization: Bearer <token>"
  std::vector<std::string> data_roots;  // dataset_config.root / .source must lie under one; empty = defaults
  std::string output_root = "runs/serve";  // a job's output.dir must lie inside; default dirs <root>/job-<id>
  std::string ompi_server;              // devices' rendezvous (URI or file:F) of a user-run ompi-server
  double device_timeout = 120;          // seconds a wait in a world with devices may last
  double heartbeat_timeout = 5;  // seconds of a device's silence that make it lost
};

// The data roots used when --data-root is not given: the project's data/ directory, the working
// directory's data/ (torchvision's data/MNIST/raw, where the original kept MNIST),
// /usr/share/datasets (where the Debian dataset packages install) and /usr/share/common-licenses
// (public license texts: configs/gpt_char.yaml trains its transformer on GPL-3 there).
std::vector<std::string> default_data_roots();

// Adds the `serve` subcommand to the launcher's command line. Its --threads and --quiet go to
// `train` (the per-job options); the rest to `serve`.
CLI::App* add_serve_command(CLI::App& app, ServeOptions& serve, TrainOptions& train);

// Every rank calls this (it starts with a collective). Rank 0 serves until POST /api/shutdown
// or SIGINT/SIGTERM, then ends the workers; returns the process exit code (0 after a clean
// shutdown, 1 when the address cannot be bound or --output-root cannot be resolved).
int run_serve(MpiTransport& comm, const ServeOptions& serve, const TrainOptions& train);

}  // namespace arceus
