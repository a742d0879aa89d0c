#include "launcher/device.h"

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <chrono>
#include <thread>

#include "launcher/child_process.h"
#include "launcher/shared_options.h"
#include "ranks/mpi_transport.h"

namespace arceus {

namespace {

using json = nlohmann::json;

constexpr const char* kLaunchedVar = "ARCEUS_DEVICE_LAUNCHED";  // set in the device's MPI process
constexpr const char* kPortVar = "ARCEUS_DEVICE_MPI_PORT";       // the port it connects to
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::fflush(stderr);
  std::exit(1);
}

httplib::Headers auth(const DeviceOptions& d) {
  httplib::Headers h;
  if (!d.token.empty()) h.emplace("Authorization", "Bearer " + d.token);
  return h;
}

// A JSON reply of the server, or a failure naming the request and what came back.
json call(const DeviceOptions& d, const std::string& method, const std::string& path, const json* body = nullptr) {
  httplib::Client client(d.api_url);
  client.set_connection_timeout(10);
  client.set_read_timeout(60);
  const auto res = body ? client.Post(path, auth(d), body->dump(), "application/json") : client.Get(path, auth(d));
  if (!res) {
    fail("[device] " + method + " " + d.api_url + path + ": no answer (" + httplib::to_string(res.error()) +
         "); is arceus serve running there?");
  }
  json j = json::parse(res->body, nullptr, false);
  if (res->status >= 300) {
    const std::string why = j.is_object() ? j.value("error", res->body) : res->body;
    fail("[device] " + method + " " + d.api_url + path + ": " + std::to_string(res->status) + " " + why);
  }
  if (j.is_discarded()) fail("[device] " + method + " " + d.api_url + path + ": the answer is not JSON: " + res->body);
  return j;
}

}  // namespace

CLI::App* add_device_command(CLI::App& app, DeviceOptions& device, TrainOptions& train) {
  auto* cmd = app.add_subcommand("device", "Join a running `arceus serve` as a stage of a job (the original's device client)");
  cmd->add_option("--api-url", device.api_url,
                  "The server: http://HOST:PORT, or the original's bare HOST (port 4000)")
      ->required()
      ->transform([](const std::string& v) { return normalize_api_url(v); });
  cmd->add_option("--job-id", device.job_id, "The job to take a stage of (its id from POST /api/jobs)")->required();
  cmd->add_option("--token", device.token, "The server's --token, when it has one");
  cmd->add_option("--timeout", device.timeout,
                  "Seconds a wait for a message may last inside a job before this device counts the other "
                  "side as stuck")
      ->default_val(120)
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--once", device.once, "Leave after the job: exit 0 once it completed (1 if it failed or stopped)");
  add_threads_option(*cmd, train.threads, "LibTorch/BLAS threads of this device ('auto' = all its cores)");
  return cmd;
}

std::string normalize_api_url(std::string url) {
  if (url.find("://") == std::string::npos) url = "http://" + url;  // the original's bare <flask-server-ip>
  const size_t host = url.find("://") + 3;
  const size_t slash = url.find('/', host);
  const std::string authority = url.substr(host, slash == std::string::npos ? std::string::npos : slash - host);
  if (authority.find(':') == std::string::npos && authority.find(']') == std::string::npos) {
    url.insert(host + authority.size(), ":4000");  // the original's port
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

namespace {

volatile std::sig_atomic_t g_device_signal = 0;
void on_device_signal(int sig) { g_device_signal = sig; }

// One heartbeat: the answer, or a null json when the server did not answer.
json heartbeat(const DeviceOptions& d, const std::string& id, bool running, int exit_status) {
  httplib::Client client(d.api_url);
  client.set_connection_timeout(3);
  client.set_read_timeout(5);
  json body = {{"worker", running ? "running" : "none"}};
  if (exit_status >= 0) body["exit_status"] = exit_status;
  const auto res = client.Post("/api/devices/" + id + "/heartbeat", auth(d), body.dump(), "application/json");
  if (!res) return json();
  json j = json::parse(res->body, nullptr, false);
  if (res->status == 404) fail("[device] the server no longer knows device " + id + ": " + res->body);
  if (res->status >= 300 || !j.is_object()) return json();
  return j;
}

}  // namespace

int device_agent_if_needed(const DeviceOptions& d, const TrainOptions& train, char** argv) {
  if (std::getenv(kLaunchedVar)) return -1;  // this is the device's MPI process: run_device
  const json info = call(d, "GET", "/api/devices/connect-info");
  const std::string uri = info.value("ompi_server", "");
  if (uri.empty()) fail("[device] " + d.api_url + " gave no ompi_server rendezvous: the server does not take devices");
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  json body = {{"ip", std::string(host)}, {"port", static_cast<int>(getpid())}, {"job_id", d.job_id}};
  const json reg = call(d, "POST", "/api/devices/register", &body);
  const std::string id = reg.value("device_id", json()).dump();
  std::printf("device %s: registered for job %s at %s%s\n", id.c_str(), d.job_id.c_str(), d.api_url.c_str(),
              d.once ? " (--once: leaves after the job)" : "");
  std::fflush(stdout);
  struct sigaction sa {};
  sa.sa_handler = on_device_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  // The MPI process of a job: `mpirun --ompi-server URI -np 1 <this command>` in a process
  // group of its own, so that killing it ends everything it started.
  std::vector<std::string> worker_args;
  for (char** a = argv + 1; *a; ++a) worker_args.push_back(*a);
  pid_t worker = -1;
  int exit_status = -1;  // the last MPI process's, reported once
  std::string joined_job;
  auto end_worker = [&](const char* why) {
    if (worker <= 0) return;
    kill_group(worker);
    int status = 0;
    wait_for(worker, 10, &status);
    std::printf("device %s: MPI process ended (%s)\n", id.c_str(), why);
    std::fflush(stdout);
    worker = -1;
    exit_status = 0;  // killed on request: no failure of this device
  };
  auto leave = [&](int code, const std::string& why) {
    end_worker("leaving");
    std::printf("device %s: %s\n", id.c_str(), why.c_str());
    std::fflush(stdout);
    return code;
  };
  auto last_answer = Clock::now();
  while (true) {
    if (worker > 0) {
      int status = 0;
      if (wait_for(worker, 0, &status)) {
        exit_status = exit_code_of(status);
        worker = -1;
        std::printf("device %s: MPI process of job %s ended with status %d\n", id.c_str(), joined_job.c_str(), exit_status);
        std::fflush(stdout);
      }
    }
    if (g_device_signal) {
      const bool mid_job = worker > 0;
      end_worker("interrupted");
      if (!mid_job) {
        httplib::Client client(d.api_url);
        client.set_connection_timeout(3);
        client.Delete("/api/devices/" + std::to_string(getpid()), auth(d));
        return leave(0, "left (signal between jobs)");
      }
      heartbeat(d, id, false, 128 + int(g_device_signal));  // the server notices at once
      return leave(128 + int(g_device_signal), "interrupted mid-job: the job goes on without this device");
    }
    const json answer = heartbeat(d, id, worker > 0, exit_status);
    if (answer.is_null()) {
      if (seconds_since(last_answer) > 30) return leave(1, "the server has not answered for 30 s: giving up");
    } else {
      last_answer = Clock::now();
      exit_status = -1;  // reported
      const std::string action = answer.value("action", "wait");
      const std::string job_state = answer.value("job_state", "");
      if (action == "leave") return leave(0, "left: " + answer.value("why", std::string("the server asked")));
      if (action == "abort") end_worker("its job's runner is gone");
      if (action == "connect" && worker < 0) {
        std::vector<std::string> args{"mpirun"};
        if (getuid() == 0) args.push_back("--allow-run-as-root");
        for (const auto& m : answer.value("mpirun_mca", std::vector<std::string>{})) {
          const size_t eq = m.find('=');
          args.insert(args.end(), {"--mca", m.substr(0, eq), eq == std::string::npos ? "" : m.substr(eq + 1)});
        }
        args.insert(args.end(), {"--ompi-server", answer.value("ompi_server", uri), "-np", "1", self_executable(argv[0])});
        args.insert(args.end(), worker_args.begin(), worker_args.end());
        joined_job = answer.value("job_id", json()).dump();
        worker = spawn_group(args, {{kLaunchedVar, "1"}, {kPortVar, answer.value("mpi_port", "")}}, false).pid;
        std::printf("device %s: connecting to job %s's runner\n", id.c_str(), joined_job.c_str());
        std::fflush(stdout);
      }
      if (d.once && worker < 0 && action == "wait" && answer.value("job_id", json()).dump() == d.job_id &&
          (job_state == "completed" || job_state == "failed" || job_state == "stopped")) {
        httplib::Client client(d.api_url);  // a clean leave: the server lists it as left
        client.set_connection_timeout(3);
        client.Delete("/api/devices/" + std::to_string(getpid()), auth(d));
        return leave(job_state == "completed" ? 0 : 1, "its job " + d.job_id + " is " + job_state + " (--once)");
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(d.heartbeat_ms));
  }
}

int run_device(MpiTransport& world, const DeviceOptions& d, const TrainOptions& train) {
  if (world.size() != 1) {
    std::fprintf(stderr, "error: [device] runs as one process (it was started with %d ranks)\n", world.size());
    return 1;
  }
  std::signal(SIGPIPE, SIG_IGN);  // the runner's socket closing is the runner's end, not this process's
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // its mpirun (killed with the agent) takes it along at once
  const char* port = std::getenv(kPortVar);
  if (!port || !*port) fail("[device] no MPI port to connect to (" + std::string(kPortVar) + " is not set)");
  // Every world this device is part of (the merge with the job runner, then one per device
  // that joins after it) lives until the job ends.
  std::vector<std::unique_ptr<MpiTransport>> worlds;
  worlds.push_back(MpiTransport::connect(port));
  worlds.back()->set_wait_limit(d.timeout);
  std::printf("device: joined the job's world as rank %d\n", worlds.back()->rank());
  std::fflush(stdout);
  AcceptHook grow = [&](Transport& current, const std::string& next_port) -> Transport& {
    worlds.push_back(static_cast<MpiTransport&>(current).accept(next_port));
    worlds.back()->set_wait_limit(d.timeout);
    return *worlds.back();
  };
  const int code = worker_loop(*worlds.back(), train, /*serve=*/true, grow);
  while (!worlds.empty()) worlds.pop_back();  // disconnect, the last world first
  return code;
}

}  // namespace arceus
