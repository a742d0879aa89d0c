// A job on devices in a child job runner (see child_runner.h).
#include "launcher/serve/child_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "launcher/child_process.h"
#include "launcher/job_runner.h"
#include "launcher/serve/state.h"

namespace arceus::serve {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Seconds = std::chrono::duration<double>;

DeviceRun JobRunner::run_on_devices(ServeState&, const std::vector<int>&, const Config&, const TrainOptions&,
                                    JobObserver&) {
  DeviceRun run;
  run.result.state = RunState::Failed;
  run.result.error = "[serve] this server runs no job on devices";
  return run;
}

namespace {

// The devices' own MPI processes from an earlier run must have ended before they connect
// again: told to abort, each has `seconds` to say its process ended, else it counts as gone.
void settle_devices(ServeState& s, const std::vector<int>& devices, double seconds) {
  const auto t0 = Clock::now();
  std::unique_lock<std::mutex> lock(s.mu);
  while (true) {
    bool running = false;
    for (int id : devices) {
      Device* d = s.devices.find(id);
      if (!d || !is_live(d->state) || !d->worker_running) continue;
      d->abort = true;
      running = true;
      if (Seconds(Clock::now() - t0).count() > seconds) {
        d->state = DeviceState::Gone;
        d->why = "its MPI process of the last run did not end within " + std::to_string(int(seconds)) + " s";
      }
    }
    if (!running || Seconds(Clock::now() - t0).count() > seconds) return;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    lock.lock();
  }
}

// The first lost device of `devices` (0: none) and why: silent past the heartbeat bound, or its
// MPI process ended with a failure. Caller holds the lock.
int find_lost(ServeState& s, const std::vector<int>& devices, Clock::time_point started, std::string* why) {
  const auto now = Clock::now();
  for (int id : devices) {
    const Device* d = s.devices.find(id);
    if (!d) continue;
    if (!is_live(d->state)) {
      *why = d->why.empty() ? std::string("it left") : d->why;
      return id;
    }
    const double silent = Seconds(now - (d->heard ? std::max(d->last_seen, started) : started)).count();
    if (silent > s.heartbeat_timeout) {
      char text[96];
      std::snprintf(text, sizeof text, "no heartbeat for %.1f s", silent);
      *why = text;
      return id;
    }
    if (d->worker_exit > 0) {
      *why = "its MPI process ended with status " + std::to_string(d->worker_exit);
      return id;
    }
  }
  return 0;
}

}  // namespace

DeviceRun run_in_child(ServeState& s, const std::vector<int>& devices, const Config& config, const TrainOptions& options,
                       JobObserver& observer, double wait_limit) {
  DeviceRun run;
  settle_devices(s, devices, 15);
  std::string uri;
  std::vector<std::string> mca;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    uri = s.rendezvous;
    mca = s.rendezvous_mca;
    for (int id : devices) {
      Device* d = s.devices.find(id);
      if (!d) continue;
      d->connect_port.clear();
      d->abort = false;
      d->worker_exit = -1;
      d->rank = -1;
    }
  }
  char dir_template[] = "/tmp/arceus-job-XXXXXX";
  if (!::mkdtemp(dir_template)) {
    run.result.state = RunState::Failed;
    run.result.error = "[serve] cannot create the job runner's directory under /tmp";
    return run;
  }
  const std::string dir = dir_template;
  {
    std::ofstream(dir + "/config.yaml") << to_yaml(config);
    std::ofstream(dir + "/run.json") << json{{"devices", devices.size()}, {"wait_limit", wait_limit},
                                             {"threads", options.threads}}.dump();
  }
  std::vector<std::string> args{"mpirun"};
  if (::getuid() == 0) args.push_back("--allow-run-as-root");
  for (const auto& m : mca) {
    const size_t eq = m.find('=');
    args.insert(args.end(), {"--mca", m.substr(0, eq), eq == std::string::npos ? "" : m.substr(eq + 1)});
  }
  args.insert(args.end(), {"--ompi-server", uri, "-np", "1", self_executable("arceus"), "job-runner", "--spec", dir});

  const auto started = Clock::now();
  ChildProcess child;
  try {
    child = spawn_group(args, {}, true);
  } catch (const std::exception& e) {
    run.result.state = RunState::Failed;
    run.result.error = std::string("[serve] cannot start the job runner: ") + e.what();
    return run;
  }
  std::string port;
  bool got_result = false, stop_sent = false, ended = false;
  int peer = -1, status = 0;
  Clock::time_point result_time;
  auto handle = [&](const std::string& line) {
    const json e = json::parse(line, nullptr, false);
    if (!e.is_object()) return;
    const std::string kind = e.value("kind", "");
    if (kind == "log") observer.on_log(e.value("line", ""));
    else if (kind == "step") observer.on_step(e["data"]);
    else if (kind == "epoch") observer.on_epoch(e["data"]);
    else if (kind == "port") port = e.value("port", "");
    else if (kind == "accepting" || kind == "joined") {
      const int k = e.value("device", 0);
      if (k < 1 || size_t(k) > devices.size()) return;
      std::lock_guard<std::mutex> lock(s.mu);
      Device* d = s.devices.find(devices[size_t(k - 1)]);
      if (!d) return;
      if (kind == "accepting") {
        d->connect_port = port;
      } else {
        d->connect_port.clear();
        d->rank = k;
        if (d->state == DeviceState::Idle) d->state = DeviceState::Training;
        std::printf("[serve] %s joined the job runner as rank %d\n", Devices::name(*d).c_str(), k);
        std::fflush(stdout);
      }
    } else if (kind == "result") {
      got_result = true;
      result_time = Clock::now();
      run.result.state = e.value("state", "failed") == "completed" ? RunState::Completed
                         : e.value("state", "") == "stopped"       ? RunState::Stopped
                                                                   : RunState::Failed;
      run.result.error = e.value("error", "");
      run.result.summary = e.value("summary", json());
      peer = e.value("peer", -1);
    }
  };
  // The runner's stdout (the trainer's own lines) is passed through; its events are read from
  // events.jsonl as they are appended.
  int events = -1;
  std::string partial;
  auto read_events = [&] {
    if (events < 0) events = ::open((dir + "/events.jsonl").c_str(), O_RDONLY | O_CLOEXEC);
    if (events < 0) return;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(events, buf, sizeof buf)) > 0) partial.append(buf, size_t(n));
    size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      handle(partial.substr(0, nl));
      partial.erase(0, nl + 1);
    }
  };
  auto pass_through = [&](int timeout_ms) {
    pollfd p{child.out, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return;
    char buf[65536];
    const ssize_t n = ::read(child.out, buf, sizeof buf);
    if (n <= 0) {
      ended = true;
      return;
    }
    std::fwrite(buf, 1, size_t(n), stdout);
    std::fflush(stdout);
  };
  while (!ended) {
    pass_through(100);
    read_events();
    if (!stop_sent && observer.stop_requested()) {
      std::ofstream(dir + "/stop") << "stop\n";
      stop_sent = true;
    }
    if (!got_result && !ended) {
      std::lock_guard<std::mutex> lock(s.mu);
      run.lost = find_lost(s, devices, started, &run.why);
      if (run.lost) break;
    }
    // A clean job's runner ends by itself; one that does not within 10 s of its result is ended.
    if (got_result && Seconds(Clock::now() - result_time).count() > 10) break;
  }
  kill_group(child.pid);
  if (!wait_for(child.pid, 10, &status)) std::fprintf(stderr, "[serve] the job runner (pid %d) did not end\n", child.pid);
  // Everything the runner wrote before it ended (steps, the result) is in the file.
  const auto drain_end = Clock::now() + std::chrono::seconds(2);
  while (!ended && Clock::now() < drain_end) pass_through(50);
  ::close(child.out);
  read_events();
  if (events >= 0) ::close(events);
  std::error_code ec;
  if (!std::getenv("ARCEUS_KEEP_JOB_RUNNER_DIR")) fs::remove_all(dir, ec);  // kept: for debugging the runner

  std::unique_lock<std::mutex> lock(s.mu);
  // A device of the job that failed the job (a wait on it timed out: alive but stuck, or gone).
  if (!run.lost && got_result && run.result.state == RunState::Failed && peer >= 1 && size_t(peer) <= devices.size()) {
    run.lost = devices[size_t(peer - 1)];
    run.why = run.result.error;
  }
  if (!run.lost && !got_result) {
    // The runner ended without its result. A device that died is the likely cause (the runner
    // can die of it before its heartbeats have been missed long enough, e.g. by SIGPIPE on the
    // dead peer's socket): wait up to the heartbeat bound for one of them to count as lost.
    std::string why;
    const auto until = Clock::now() + std::chrono::duration<double>(s.heartbeat_timeout + 1.0);
    while (!(run.lost = find_lost(s, devices, started, &why)) && Clock::now() < until) {
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      lock.lock();
    }
    run.why = why;
    if (!run.lost) {
      run.result.state = RunState::Failed;
      run.result.error = "[serve] the job runner ended (exit status " + std::to_string(exit_code_of(status)) +
                         ") before the job did; its output is in the server's log";
    }
  }
  for (int id : devices) {
    Device* d = s.devices.find(id);
    if (!d) continue;
    d->connect_port.clear();
    d->rank = -1;
    if (d->state == DeviceState::Training) d->state = DeviceState::Idle;
    // Their MPI processes may wait on the runner that is gone: they end them.
    if (run.lost || run.result.state != RunState::Completed) d->abort = d->abort || d->worker_running;
  }
  return run;
}

}  // namespace arceus::serve
