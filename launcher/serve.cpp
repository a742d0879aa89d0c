// `arceus serve`: the command line and the wiring of the REST shim (see serve.h). The shim
// itself lives in launcher/serve/: jobs and their state machine (jobs.h), the ranks and
// devices (devices.h), the JSON views (views.h), the endpoints (routes.h), the HTTP server
// (http.h, the only httplib file), the queue loop on rank 0's main thread (runner.h) and the
// MPI world it trains on (mpi_runner.h, the only MPI file).
#include "launcher/serve.h"

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "launcher/blas.h"
#include "launcher/rendezvous.h"
#include "launcher/request_body.h"
#include "launcher/serve/http.h"
#include "launcher/serve/mpi_runner.h"
#include "launcher/serve/persist.h"
#include "launcher/serve/runner.h"
#include "launcher/serve/state.h"
#include "ranks/trainer.h"

#ifndef ARCEUS_SOURCE_DIR
#define ARCEUS_SOURCE_DIR "."
#endif

namespace arceus {

namespace {

namespace fs = std::filesystem;
using rest::join;
using rest::resolve_path;

// SIGINT/SIGTERM on rank 0: a graceful shutdown, polled by the queue loop and the observer
// (ServeState::signal). SA_RESETHAND: a second signal ends the process the default way.
volatile std::sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace

std::vector<std::string> default_data_roots() {
  std::vector<std::string> roots = {(fs::path(ARCEUS_SOURCE_DIR) / "data").string()};
  // The working directory's data/: where torchvision, and so the original, kept MNIST.
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (!ec && resolve_path((cwd / "data").string()) != resolve_path(roots.front())) roots.push_back((cwd / "data").string());
  roots.push_back("/usr/share/datasets");
  roots.push_back("/usr/share/common-licenses");
  return roots;
}

CLI::App* add_serve_command(CLI::App& app, ServeOptions& serve, TrainOptions& train) {
  auto* cmd = app.add_subcommand(
      "serve", "Serve the original's REST API (default 127.0.0.1:4000): rank 0 answers HTTP and runs the jobs "
               "one at a time, ranks 1..N-1 own the layers. See docs/rest-api.md");
  cmd->add_option("--port", serve.port, "TCP port to listen on (0: any free port, printed at start)")
      ->default_val(4000)
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--host", serve.host,
                  "Address to listen on: 127.0.0.1 (default) is this machine only; 0.0.0.0 every interface")
      ->default_val("127.0.0.1");
  cmd->add_option("--device-timeout", serve.device_timeout,
                  "Seconds a rank of a job on devices waits for a message before it counts the other device "
                  "as stuck (alive, but not answering over MPI); a device that dies is noticed sooner, by "
                  "--heartbeat-timeout")
      ->default_val(120)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--heartbeat-timeout", serve.heartbeat_timeout,
                  "Seconds of silence (devices send a heartbeat every second) after which a device is lost "
                  "and its job recovers (training.on_device_loss)")
      ->default_val(5)
      ->check(CLI::Range(1.5, 3600.0));
  cmd->add_option("--ompi-server", serve.ompi_server,
                  "Open MPI rendezvous for devices (URI or file:F) when you run mpirun yourself with the same "
                  "--ompi-server; without mpirun, arceus serve starts one itself");
  cmd->add_option("--token", serve.token,
                  "Require 'Authorization: Bearer TOKEN' on every POST request (default: $ARCEUS_TOKEN; "
                  "neither set: no token)")
      ->envname("ARCEUS_TOKEN");
  cmd->add_option("--data-root", serve.data_roots,
                  "A directory a job's dataset_config.root or .source may lie under (repeatable; replaces the "
                  "defaults: the project's data/, the working directory's data/, /usr/share/datasets and "
                  "/usr/share/common-licenses)")
      ->allow_extra_args(false);
  cmd->add_option("--output-root", serve.output_root,
                  "The directory a job's output.dir must lie inside (symlinks and '..' resolved; a relative "
                  "output.dir is taken from the working directory); a job without output.dir writes "
                  "<root>/job-<id>")
      ->default_val("runs/serve");
  cmd->add_option("--threads", train.threads,
                  "LibTorch/BLAS threads per stage rank: 'auto' divides a host's cores among the stage ranks "
                  "it runs, or a positive integer")
      ->default_val("auto")
      ->check(arceus::check_threads_option);
  cmd->add_flag("--quiet", train.quiet, "No live progress lines, timing tables or access log on rank 0's output");
  return cmd;
}

int run_serve(MpiTransport& comm, const ServeOptions& options, const TrainOptions& train) {
  // Collective: every rank, once, before the workers start waiting for jobs.
  serve::MpiRunner runner(comm, options.device_timeout);
  if (runner.rank() != 0) return runner.serve_worker(train);

  serve::ServeState state(runner.world_size(), runner.hosts());
  const Rendezvous rendezvous = server_rendezvous(options.host, options.ompi_server);
  state.rendezvous = rendezvous.uri;
  state.rendezvous_mca = rendezvous.mca;
  state.heartbeat_timeout = options.heartbeat_timeout;
  state.token = options.token;
  state.quiet = train.quiet;
  state.signal = &g_signal;
  for (const auto& r : options.data_roots.empty() ? default_data_roots() : options.data_roots)
    state.data_roots.push_back(resolve_path(r));
  const rest::WritePath output_root = rest::resolve_for_writing(options.output_root);
  if (!output_root.error.empty()) {
    std::fprintf(stderr, "error: [serve] --output-root '%s' cannot be resolved: %s\n", options.output_root.c_str(),
                 output_root.error.c_str());
    runner.shutdown_workers();
    return 1;
  }
  state.output_root = output_root.path;
  state.output_root_arg = options.output_root;
  // The job table of an earlier run of the server with this root (persist.h).
  state.jobs_file = (output_root.path / "jobs.json").string();
  std::string restored;
  try {
    restored = serve::restore_jobs(state);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: [serve] %s\n", e.what());
    runner.shutdown_workers();
    return 1;
  }

  install_signal_handlers();
  serve::HttpServer http(state);
  const int port = http.bind(options.host, options.port);
  if (port < 0) {
    std::fprintf(stderr, "error: [serve] cannot listen on %s:%d (address in use or not available here); choose "
                 "another --port or --host\n", options.host.c_str(), options.port);
    runner.shutdown_workers();
    return 1;
  }
  http.start();

  const int pid = static_cast<int>(getpid());
  const std::vector<std::string>& hosts = runner.hosts();
  const int world = runner.world_size();
  std::printf("arceus serve: listening on http://%s:%d (rank 0, pid %d; stop with POST /api/shutdown or kill -TERM %d)\n",
              options.host.c_str(), port, pid, pid);
  std::printf("  %d rank%s: rank 0 on %s: orchestrator and HTTP\n", world, world == 1 ? "" : "s", hosts[0].c_str());
  for (int r = 1; r < world; ++r) std::printf("  rank %d on %s: waiting for jobs\n", r, hosts[size_t(r)].c_str());
  std::vector<std::string> roots;
  for (const auto& r : state.data_roots) roots.push_back(r.string());
  std::printf("  data roots: %s\n", join(roots).c_str());
  std::printf("  jobs: %s\n", restored.empty() ? ("none yet; the table is kept in " + state.jobs_file).c_str() : restored.c_str());
  std::printf("  output root: %s (a job without output.dir writes %s/job-<id>)\n", state.output_root.c_str(),
              state.output_root_arg.c_str());
  std::printf("  token: %s\n", state.token.empty() ? "none (any local client may POST; set --token or ARCEUS_TOKEN)"
                                                    : "required on POST (Authorization: Bearer ...)");
  std::printf("  blas: %s\n", train.blas.c_str());
  std::printf("  devices: %s\n", !state.takes_devices()
                                     ? "none can join (no ompi-server: see GET /api/devices/connect-info)"
                                     : "arceus device --api-url http://HOST:PORT --job-id ID joins a job");
  std::fflush(stdout);

  serve::run_queue(state, runner, train);

  {
    std::lock_guard<std::mutex> lock(state.mu);
    std::printf("arceus serve: shutting down (%s)\n", state.shutdown_reason.c_str());
  }
  serve::stop_queued(state);
  serve::dismiss_devices(state, 3);
  std::fflush(stdout);
  if (!state.broken.empty()) {
    // The workers are not waiting for a broadcast: end the world the hard way.
    std::fprintf(stderr, "%s\n", state.broken.c_str());
    state.events.close();
    http.stop();
    runner.abort();
  }
  runner.shutdown_workers();
  state.events.close();
  http.stop();
  std::printf("arceus serve: stopped\n");
  std::fflush(stdout);
  return 0;
}

}  // namespace arceus
