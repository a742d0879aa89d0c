// What the shim's two sides share: the HTTP threads (routes.h) and rank 0's main thread (the
// queue loop, runner.h).
//
// Contract: one lock, `mu`, guards jobs, devices and the shutdown fields. The HTTP threads
// never call MPI: they validate requests, record jobs and queue the ids of jobs to train;
// the main thread waits on `cv`, takes one job at a time and runs it through a JobRunner, its
// observer writing logs, steps and epochs into the job record under the same lock. One job
// trains at a time: the world is one pipeline.
#pragma once

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "launcher/serve/devices.h"
#include "launcher/serve/events.h"
#include "launcher/serve/jobs.h"
#include "ranks/inference.h"

namespace arceus::serve {

struct ServeState {
  ServeState(int world, std::vector<std::string> hosts) : devices(world, std::move(hosts)) {}

  std::mutex mu;
  std::condition_variable cv;  // a job queued, shutdown
  Jobs jobs;
  Devices devices;
  bool shutdown = false;               // asked to shut down (POST /api/shutdown or a signal)
  std::string shutdown_reason;
  std::atomic<bool> stopping{false};   // == shutdown, readable without the lock
  std::string broken;                  // a job threw during training: the workers' state is unknown

  // Fixed at start.
  std::string rendezvous;              // the ompi-server URI handed to devices ("" = none join)
  std::vector<std::string> rendezvous_mca;
  std::string jobs_file;               // the saved job table (persist.h): <output root>/jobs.json
  bool jobs_file_failed = false;       // a write of it failed (reported once)
  double heartbeat_timeout = 5;        // seconds of a device's silence that make it lost mid-job
  std::vector<std::filesystem::path> data_roots;
  // A job's output.dir lies strictly inside output_root (resolved: rest::resolve_for_writing);
  // without one, the job writes output_root_arg/job-<id> (the --output-root text, relative to
  // the working directory as given).
  std::filesystem::path output_root;
  std::string output_root_arg;
  std::string token;                   // non-empty: mutating requests need "Authorization: Bearer <token>"
  bool quiet = false;                  // no access log
  // SIGINT/SIGTERM received on rank 0 (the command's handler sets it; nullptr: none watched).
  const volatile std::sig_atomic_t* signal = nullptr;

  EventHub events;         // GET /api/jobs/<id>/events
  CheckpointModel models;  // predict / generate: the latest checkpoint's model, reused while unchanged

  int signal_received() const { return signal ? *signal : 0; }
  bool takes_devices() const { return !rendezvous.empty(); }
  // Caller holds the lock. The first reason wins; wakes the main thread.
  void request_shutdown(const std::string& reason) {
    if (shutdown) return;
    shutdown = true;
    shutdown_reason = reason;
    stopping = true;
    cv.notify_all();
  }
};

}  // namespace arceus::serve
