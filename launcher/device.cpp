#include "launcher/device.h"

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <unistd.h>

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

#include "launcher/shared_options.h"
#include "ranks/mpi_transport.h"

namespace arceus {

namespace {

using json = nlohmann::json;

constexpr const char* kLaunchedVar = "ARCEUS_DEVICE_LAUNCHED";  // set in the re-executed process

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
                  "Seconds a wait for a message may last inside a job before this device gives up")
      ->default_val(120)
      ->check(CLI::PositiveNumber);
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

void device_reexec_if_needed(const DeviceOptions& d, char** argv) {
  if (std::getenv(kLaunchedVar)) return;
  const json info = call(d, "GET", "/api/devices/connect-info");
  const std::string uri = info.value("ompi_server", "");
  if (uri.empty()) fail("[device] " + d.api_url + " gave no ompi_server rendezvous: the server does not take devices");
  std::vector<std::string> args{"mpirun"};
  if (getuid() == 0) args.push_back("--allow-run-as-root");
  for (const auto& m : info.value("mpirun_mca", std::vector<std::string>{})) {
    args.push_back("--mca");
    const size_t eq = m.find('=');
    args.push_back(m.substr(0, eq));
    args.push_back(eq == std::string::npos ? "" : m.substr(eq + 1));
  }
  args.insert(args.end(), {"--ompi-server", uri, "-np", "1"});
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  args.push_back(n > 0 ? std::string(self, size_t(n)) : std::string(argv[0]));
  for (char** a = argv + 1; *a; ++a) args.push_back(*a);
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  setenv(kLaunchedVar, "1", 1);
  std::fflush(stdout);
  execvp("mpirun", cargs.data());
  fail(std::string("[device] cannot run mpirun (needed to join the server's MPI world): ") + std::strerror(errno));
}

int run_device(MpiTransport& world, const DeviceOptions& d, const TrainOptions& train) {
  if (world.size() != 1) {
    std::fprintf(stderr, "error: [device] runs as one process (it was started with %d ranks)\n", world.size());
    return 1;
  }
  json body = {{"ip", world.host()}, {"port", static_cast<int>(getpid())}, {"job_id", d.job_id}};
  const json reg = call(d, "POST", "/api/devices/register", &body);
  const std::string port = reg.value("mpi_port", "");
  if (port.empty()) fail("[device] the register answer has no mpi_port: " + reg.dump());
  const std::string id = reg.value("device_id", json()).dump();
  std::printf("device %s: registered for job %s, connecting to %s\n", id.c_str(), d.job_id.c_str(), d.api_url.c_str());
  std::fflush(stdout);
  // One device connects at a time: the server answers 503 while another one is joining.
  for (int attempt = 0;; ++attempt) {
    httplib::Client client(d.api_url);
    client.set_connection_timeout(10);
    const auto res = client.Post("/api/devices/" + id + "/connect", auth(d), "{}", "application/json");
    if (res && res->status == 202) break;
    if (!res || res->status != 503 || attempt > 600) {
      fail("[device] POST " + d.api_url + "/api/devices/" + id + "/connect: " +
           (res ? std::to_string(res->status) + " " + res->body : std::string("no answer")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  // Every world this device is part of (the merge with the server, then one per device that
  // joins after it) lives until the process ends.
  std::vector<std::unique_ptr<MpiTransport>> worlds;
  worlds.push_back(MpiTransport::connect(port));
  worlds.back()->set_wait_limit(d.timeout);
  std::printf("device: joined as rank %d of %d\n", worlds.back()->rank(), worlds.back()->size());
  std::fflush(stdout);
  AcceptHook grow = [&](Transport& current, const std::string& next_port) -> Transport& {
    worlds.push_back(static_cast<MpiTransport&>(current).accept(next_port));
    worlds.back()->set_wait_limit(d.timeout);
    return *worlds.back();
  };
  return worker_loop(*worlds.back(), train, /*serve=*/true, grow);
}

}  // namespace arceus
